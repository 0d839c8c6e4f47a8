package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// runHelpers renders testdata/helpers with call=<call> and returns out.txt
// (and the run's result).
func runHelpers(t *testing.T, call string, env map[string]string) (string, result) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "input.json", `{"call": "`+call+`"}`)
	out := filepath.Join(dir, "out")
	res := runInit(t, "", env, testdata(t, "helpers"), "--config-file", cfg, "--output-dir", out)
	if res.code != 0 {
		return "", res
	}
	return readFile(t, filepath.Join(out, "out.txt")), res
}

func TestOfflineHelpers(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	mustSucceed(t, runInit(t, "", nil, testdata(t, "helpers"), "--output-dir", out))
	got := readFile(t, filepath.Join(out, "out.txt"))
	bundleUUID := readFile(t, filepath.Join(out, "uuid.txt"))
	if !isUUID(bundleUUID) {
		t.Fatalf("bundle_uuid %q is not a UUID", bundleUUID)
	}
	// bundle_uuid is the same in every file of one init.
	assertEqual(t, got, strings.Join([]string{
		"url_host=example.com:8080",
		"url_path=/a/b",
		"regexp_match=true",
		"regexp_replace=my_agent_app",
		"random_int=0",
		"uuid_len=36",
		"bundle_uuid=" + bundleUUID,
		"map=a=1,b=offline",
		"lower=mixed upper=MIXED",
		"path_separator=/",
		"record_deployment_history=false",
	}, "\n")+"\n")

	out2 := filepath.Join(dir, "out2")
	mustSucceed(t, runInit(t, "", map[string]string{envRecordHistory: "1"}, testdata(t, "helpers"), "--output-dir", out2))
	if !strings.Contains(readFile(t, filepath.Join(out2, "out.txt")), "record_deployment_history=true") {
		t.Fatal("record_deployment_history ignores its variable")
	}
	if readFile(t, filepath.Join(out2, "uuid.txt")) == bundleUUID {
		t.Fatal("bundle_uuid should differ between runs")
	}
}

func TestWorkspaceHelpersFromEnvironment(t *testing.T) {
	const sp = "6f1c2a0e-1b2c-4d5e-8f90-123456789abc"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{
			"azure user without unity catalog",
			map[string]string{envHost: "https://adb-123.4.azuredatabricks.net/", envUserName: "Jane.Doe+test@example.com", envDefaultCatalog: ""},
			"host=https://adb-123.4.azuredatabricks.net\nnode=Standard_D3_v2\nuser=Jane.Doe+test@example.com\nshort=jane_doe_test\nsp=false\ncatalog=[]\n",
		},
		{
			"gcp service principal with a display name",
			map[string]string{envHost: "https://1234.5.gcp.databricks.com", envUserName: sp, envDisplayName: "Deploy SP", envDefaultCatalog: "main"},
			"host=https://1234.5.gcp.databricks.com\nnode=n1-standard-4\nuser=" + sp + "\nshort=deploy_sp\nsp=true\ncatalog=[main]\n",
		},
		{
			"aws host without scheme, service principal without a display name",
			map[string]string{envHost: "myhost.test", envUserName: sp, envDefaultCatalog: "hive_metastore"},
			"host=https://myhost.test\nnode=i3.xlarge\nuser=" + sp + "\nshort=6f1c2a0e_1b2c_4d5e_8f90_123456789abc\nsp=true\ncatalog=[hive_metastore]\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, res := runHelpers(t, "workspace", tc.env)
			mustSucceed(t, res)
			assertEqual(t, got, tc.want)
		})
	}
}

func TestWorkspaceHelpersWithoutEnvironment(t *testing.T) {
	noWorkspace := "cannot determine target workspace, please first setup a configuration profile using 'databricks auth login'"
	for helper, want := range map[string]string{
		"workspace_host":       noWorkspace,
		"smallest_node_type":   noWorkspace,
		"user_name":            envUserName + " is not set",
		"short_name":           envUserName + " is not set",
		"is_service_principal": envUserName + " is not set",
		"default_catalog":      envDefaultCatalog + " is not set",
	} {
		t.Run(helper, func(t *testing.T) {
			_, res := runHelpers(t, helper, nil)
			// Shaped like the CLI's helpers-error acceptance output.
			mustFailContaining(t, res,
				"Error: failed to compute file content for out.txt.tmpl. template: :",
				"executing \"\" at <"+helper+">: error calling "+helper+": "+want)
		})
	}
}

func TestFailHelperReportsBareMessage(t *testing.T) {
	_, res := runHelpers(t, "fail", nil)
	mustFail(t, res, "custom failure: fail")
}

func TestShortName(t *testing.T) {
	for _, tc := range []struct{ user, display, want string }{
		{"tester@databricks.com", "", "tester"},
		{"Jane.Doe@example.com", "", "jane_doe"},
		{".test//test..test", "", "test_test_test"},
		{"élodie.o'neil@example.com", "", "élodie_o_neil"},
		{"a__b", "", "a_b"},
		{"6f1c2a0e-1b2c-4d5e-8f90-123456789abc", "My SP", "my_sp"},
		{"not-a-uuid", "Ignored", "not_a_uuid"},
	} {
		if got := shortName(tc.user, tc.display); got != tc.want {
			t.Errorf("shortName(%q, %q) = %q, want %q", tc.user, tc.display, got, tc.want)
		}
	}
}

func TestIsUUID(t *testing.T) {
	for _, s := range []string{
		"6f1c2a0e-1b2c-4d5e-8f90-123456789abc",
		"6F1C2A0E-1B2C-4D5E-8F90-123456789ABC",
		"{6f1c2a0e-1b2c-4d5e-8f90-123456789abc}",
		"urn:uuid:6f1c2a0e-1b2c-4d5e-8f90-123456789abc",
		"6f1c2a0e1b2c4d5e8f90123456789abc",
		newUUID(),
	} {
		if !isUUID(s) {
			t.Errorf("%s should be a UUID", s)
		}
	}
	for _, s := range []string{"", "user@example.com", "6f1c2a0e-1b2c-4d5e-8f90-123456789abg", "6f1c2a0e_1b2c_4d5e_8f90_123456789abc"} {
		if isUUID(s) {
			t.Errorf("%s should not be a UUID", s)
		}
	}
}

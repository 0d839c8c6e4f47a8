package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	opts, err := parseArgs([]string{
		"--config-file", "in.json", "tmpl", "--output-dir=out", "-ojson",
		"--template-dir", "sub", "--tag", "v1", "--profile", "DEFAULT", "--debug",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := options{
		templatePath: "tmpl", configFile: "in.json", outputDir: "out",
		templateDir: "sub", tag: "v1", output: "json",
	}
	if opts != want {
		t.Fatalf("got %+v, want %+v", opts, want)
	}
	for _, args := range [][]string{{"-o", "json"}, {"-o=json"}, {"--output", "json"}, {"--output=json"}} {
		opts, err := parseArgs(args)
		if err != nil || opts.output != "json" {
			t.Errorf("%q: got %+v, %v", args, opts, err)
		}
	}
	opts, err = parseArgs([]string{"--", "--looks-like-a-flag"})
	if err != nil || opts.templatePath != "--looks-like-a-flag" {
		t.Errorf("-- should end flags: %+v, %v", opts, err)
	}
}

func TestCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "prompting is not supported. Please specify the path, name or URL of the template to use"},
		{[]string{"a", "b"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"x", "--nope"}, "unknown flag: --nope"},
		{[]string{"x", "-z"}, "unknown shorthand flag: 'z' in -z"},
		{[]string{"x", "--config-file"}, "flag needs an argument: --config-file"},
		{[]string{"x", "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag: accepted arguments are text and json`},
		{[]string{"x", "--tag", "a", "--branch", "b"}, "only one of --tag or --branch can be specified"},
		{[]string{"default-python"}, `built-in template "default-python" is not available in the offline bundle-init stand-in; pass the path of a local template directory`},
	} {
		mustFail(t, runInit(t, t.TempDir(), nil, tc.args...), tc.want)
	}
	for _, url := range []string{"http://github.com/databricks/cli", "git://github.com/databricks/cli", "ftp://github.com/databricks/cli", "ftps://github.com/databricks/cli"} {
		mustFail(t, runInit(t, t.TempDir(), nil, url),
			`unsupported protocol in Git URL "`+url+`": only https://, ssh://, git@ URLs are supported`)
	}
}

func TestHelp(t *testing.T) {
	res := runInit(t, "", nil, "--help")
	mustSucceed(t, res)
	if !strings.Contains(res.stdout, "--config-file") {
		t.Fatalf("help does not list flags:\n%s", res.stdout)
	}
}

// gitTemplateRepo makes a local repository holding testdata/basic under
// templates/basic on branch "main" (tag "v1"), plus a branch "other" where
// the greeting default differs. It returns git environment variables that
// make https://git.example.invalid/templates.git clone from it, so the https
// path of the resolver is exercised without a network.
func gitTemplateRepo(t *testing.T) map[string]string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	repo := filepath.Join(t.TempDir(), "repo")
	copyTree(t, filepath.Join("testdata", "basic"), filepath.Join(repo, "templates", "basic"))
	env := map[string]string{
		"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
		"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
		"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
		"GIT_CONFIG_COUNT":   "2",
		"GIT_CONFIG_KEY_0":   "url.file://" + repo + ".insteadOf",
		"GIT_CONFIG_VALUE_0": "https://git.example.invalid/templates.git",
		"GIT_CONFIG_KEY_1":   "protocol.file.allow",
		"GIT_CONFIG_VALUE_1": "always",
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "template")
	git("tag", "v1")
	git("checkout", "-q", "-b", "other")
	schema := filepath.Join(repo, "templates", "basic", schemaFileName)
	writeFile(t, filepath.Dir(schema), schemaFileName, strings.Replace(readFile(t, schema), "hello {{.project_name}}", "hi from other", 1))
	git("commit", "-q", "-am", "other greeting")
	git("checkout", "-q", "main")
	return env
}

func TestGitTemplate(t *testing.T) {
	env := gitTemplateRepo(t)
	const url = "https://git.example.invalid/templates.git"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"default branch", nil, "print(\"hello my_project\")\n"},
		{"branch", []string{"--branch", "other"}, "print(\"hi from other\")\n"},
		{"tag", []string{"--tag", "v1"}, "print(\"hello my_project\")\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{url, "--template-dir", "templates/basic", "--output-dir", out}, tc.args...)
			mustSucceed(t, runInit(t, "", env, args...))
			assertEqual(t, readFile(t, filepath.Join(out, "my_project/src/my_project/main.py")), tc.want)
		})
	}

	res := runInit(t, "", env, url, "--branch", "missing", "--output-dir", t.TempDir())
	mustFailContaining(t, res, "Error: git clone failed: git clone "+url+" ", " --no-tags --branch missing --depth=1: exit status 128. ")

	// Without --template-dir the repository root is the template root.
	res = runInit(t, "", env, url, "--output-dir", t.TempDir())
	mustFail(t, res, "not a bundle template: expected to find a template schema file at databricks_template_schema.json")
}

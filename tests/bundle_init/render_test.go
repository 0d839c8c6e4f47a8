package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBasicRendersDefaultsPathsLibrariesAndMessages(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	res := runInit(t, "", nil, testdata(t, "basic"), "--output-dir", out)
	mustSucceed(t, res)

	assertLines(t, tree(t, out), []string{
		"my_project/",
		"my_project/.gitignore",
		"my_project/AGENTS.md",
		"my_project/CLAUDE.md",
		"my_project/README.md",
		"my_project/blank.txt",
		"my_project/databricks.yml",
		"my_project/double.tmpl",
		"my_project/empty.txt",
		"my_project/src/",
		"my_project/src/my_project/",
		"my_project/src/my_project/main.py",
		"my_project/verbatim.txt",
	})
	p := filepath.Join(out, "my_project")
	// Library define called with map/pair; the templated default saw project_name.
	assertEqual(t, readFile(t, filepath.Join(p, "README.md")), "# my_project (readme)\nhello my_project\n")
	assertEqual(t, readFile(t, filepath.Join(p, "src/my_project/main.py")), "print(\"hello my_project\")\n")
	// No .tmpl suffix: copied byte for byte, only the path is rendered.
	assertEqual(t, readFile(t, filepath.Join(p, "verbatim.txt")), "{{.project_name}} is copied verbatim: no .tmpl suffix\n")
	// Only one .tmpl is trimmed.
	assertEqual(t, readFile(t, filepath.Join(p, "double.tmpl")), "{{.x}}\n")
	// Empty and blank renders are still written.
	assertEqual(t, readFile(t, filepath.Join(p, "empty.txt")), "")
	assertEqual(t, readFile(t, filepath.Join(p, "blank.txt")), "\n   \n")
	assertEqual(t, readFile(t, filepath.Join(p, ".gitignore")), ".venv/\n")
	// The shared library defines exist in every template.
	if !strings.HasPrefix(readFile(t, filepath.Join(p, "AGENTS.md")), "# Agent instructions") {
		t.Fatalf("AGENTS.md does not come from the shared agents_md define")
	}
	if !strings.HasPrefix(readFile(t, filepath.Join(p, "CLAUDE.md")), "# Claude instructions") {
		t.Fatalf("CLAUDE.md does not come from the shared claude_md define")
	}
	assertEqual(t, readFile(t, filepath.Join(p, "databricks.yml")), "bundle:\n  name: my_project\n")

	// Messages go to stderr, welcome first; stdout stays empty in text mode.
	assertEqual(t, res.stderr, "Welcome to the BASIC fixture\nCreated 'my_project' (hello my_project)\n")
	assertEqual(t, res.stdout, "")
}

func TestConfigValuesWinAndFeedTemplatedDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "input.json", `{"project_name": "demo"}`)
	out := filepath.Join(dir, "out")
	res := runInit(t, "", nil, testdata(t, "basic"), "--config-file", cfg, "--output-dir", out)
	mustSucceed(t, res)
	assertEqual(t, readFile(t, filepath.Join(out, "demo/src/demo/main.py")), "print(\"hello demo\")\n")
	assertEqual(t, res.stderr, "Welcome to the BASIC fixture\nCreated 'demo' (hello demo)\n")
}

func TestRecordDeploymentHistoryDefine(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	env := map[string]string{envRecordHistory: "true"}
	mustSucceed(t, runInit(t, "", env, testdata(t, "basic"), "--output-dir", out))
	assertEqual(t, readFile(t, filepath.Join(out, "my_project/databricks.yml")),
		"bundle:\n  name: my_project\nexperimental:\n  record_deployment_history: true\n")
}

func TestOutputDirDefaultsToWorkingDirectory(t *testing.T) {
	cwd := t.TempDir()
	mustSucceed(t, runInit(t, cwd, nil, testdata(t, "order")))
	assertEqual(t, readFile(t, filepath.Join(cwd, "chain.txt")), "baecd\n")
}

func TestDefaultsFollowOrder(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"defaults only", `{}`, "baecd\n"},
		{"config value seen by later defaults", `{"c": "C"}`, "Cd\n"},
		{"config value at the start of the chain", `{"b": "B"}`, "Baecd\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, dir, "input.json", tc.config)
			out := filepath.Join(dir, "out")
			res := runInit(t, "", nil, testdata(t, "order"), "--config-file", cfg, "--output-dir", out)
			mustSucceed(t, res)
			assertEqual(t, readFile(t, filepath.Join(out, "chain.txt")), tc.want)
			assertEqual(t, res.stderr, defaultSuccessMessage+"\n")
		})
	}
}

func TestDefaultCannotSeeLaterProperty(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	res := runInit(t, "", nil, testdata(t, "order-later"), "--output-dir", out)
	mustFail(t, res, `variable "second" not defined`)
	assertLines(t, tree(t, out), nil)
}

func TestLibraryDefineOverridesSharedOne(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	mustSucceed(t, runInit(t, "", nil, testdata(t, "library-override"), "--output-dir", out))
	assertEqual(t, readFile(t, filepath.Join(out, "AGENTS.md")), "Custom agent instructions for demo.")
	if !strings.HasPrefix(readFile(t, filepath.Join(out, "CLAUDE.md")), "# Claude instructions") {
		t.Fatalf("claude_md should still come from the shared library")
	}
}

func TestSkipSemantics(t *testing.T) {
	src := fixture(t, "skip")
	// git cannot hold an empty directory; walked directories are created
	// even when empty.
	if err := os.Mkdir(filepath.Join(src, "template", "{{.project_name}}", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	res := runInit(t, "", nil, src, "--output-dir", out, "-o", "json")
	mustSucceed(t, res)

	assertLines(t, tree(t, out), []string{
		"proj/",
		"proj/empty/",
		"proj/kept.txt",
		// late/ was skipped only after it had been walked: its files stay.
		"proj/late/",
		"proj/late/keep.txt",
		"proj/m_skipper/",
		"proj/m_skipper/skip-late.txt",
		// Every file of star/ was skipped by {{skip "*"}}; the directory was
		// walked, so it exists, and its subdirectory was dropped before
		// being walked.
		"proj/star/",
		// local.txt was skipped by a later sibling, relative to sub/.
		"proj/sub/",
		"proj/sub/relative.txt",
	})

	var payload struct {
		Outputs []string `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &payload); err != nil {
		t.Fatalf("stdout is not the JSON payload: %v\n%s", err, res.stdout)
	}
	assertLines(t, payload.Outputs, []string{
		"proj/kept.txt",
		"proj/late/keep.txt",
		"proj/m_skipper/skip-late.txt",
		"proj/sub/relative.txt",
	})
	assertEqual(t, res.stderr, defaultSuccessMessage+"\n")
}

func TestSkippedFilesAreStillRendered(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "input.json", `{"fail_in_skipped_file": "yes"}`)
	out := filepath.Join(dir, "out")
	res := runInit(t, "", nil, testdata(t, "skip"), "--config-file", cfg, "--output-dir", out)
	mustFail(t, res, "skipped files are still rendered")
	assertLines(t, tree(t, out), nil)
}

func TestSkipIsUndefinedOutsideTheWalk(t *testing.T) {
	for _, tc := range []struct{ fixture, want string }{
		{"skip-in-library", `template: bad.tmpl:1: function "skip" not defined`},
		{"skip-in-default", `error in {{skip "x"}}: template: :1: function "skip" not defined`},
		{"skip-in-welcome", `error in {{skip "x"}}: template: :1: function "skip" not defined`},
		{"skip-in-success", `error in {{skip "x"}}: template: :1: function "skip" not defined`},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			mustFail(t, runInit(t, "", nil, testdata(t, tc.fixture), "--output-dir", out), tc.want)
		})
	}
}

func TestFileModes(t *testing.T) {
	src := fixture(t, "modes")
	for name, mode := range map[string]os.FileMode{"run.sh": 0o755, "readonly.txt": 0o444, "tool.sh.tmpl": 0o755} {
		if err := os.Chmod(filepath.Join(src, "template", name), mode); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	mustSucceed(t, runInit(t, "", nil, src, "--output-dir", out))
	// Source mode | 0o200; exec bits kept; umask 022 applies.
	for name, want := range map[string]os.FileMode{"run.sh": 0o755, "readonly.txt": 0o644, "tool.sh": 0o755} {
		info, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", name, got, want)
		}
	}
	assertEqual(t, readFile(t, filepath.Join(out, "tool.sh")), "#!/bin/sh\necho rendered\n")
}

func TestConflictWritesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	existing := writeFile(t, out, "my_project/src/my_project/main.py", "original\n")
	res := runInit(t, "", nil, testdata(t, "basic"), "--output-dir", out)
	mustFail(t, res, "failed to initialize template, one or more files already exist: my_project/src/my_project/main.py")
	assertLines(t, tree(t, out), []string{
		"my_project/",
		"my_project/src/",
		"my_project/src/my_project/",
		"my_project/src/my_project/main.py",
	})
	assertEqual(t, readFile(t, existing), "original\n")
	if strings.Contains(res.stderr, "Created") {
		t.Fatalf("success message printed on failure: %s", res.stderr)
	}
}

func TestPathEscapingOutputRoot(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	res := runInit(t, "", nil, testdata(t, "escape"), "--output-dir", out)
	mustFail(t, res, "error while verifying file ../x.txt does not already exist: relative path escapes root: ../x.txt")
	assertLines(t, tree(t, parent), nil)
}

func TestTemplateDirInSchema(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	mustSucceed(t, runInit(t, "", nil, testdata(t, "template-dir/variant"), "--output-dir", out))
	assertEqual(t, readFile(t, filepath.Join(out, "out.txt")), "variant from the shared tree\n")

	// --template-dir only applies to Git URLs; local paths ignore it.
	out2 := filepath.Join(t.TempDir(), "out")
	mustSucceed(t, runInit(t, "", nil, testdata(t, "order"), "--template-dir", "nope", "--output-dir", out2))
	assertEqual(t, readFile(t, filepath.Join(out2, "chain.txt")), "baecd\n")

	root := testdata(t, "template-dir-missing")
	res := runInit(t, "", nil, root, "--output-dir", out)
	mustFail(t, res, "template directory "+filepath.Join(root, "../nope")+" not found")
}

func TestWelcomeMessageRendersBeforeDefaults(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	res := runInit(t, "", nil, testdata(t, "messages"), "--output-dir", out)
	assertEqual(t, res.stderr, "Error: variable \"project_name\" not defined\n")
	assertLines(t, tree(t, out), nil)

	cfg := writeFile(t, dir, "input.json", `{"project_name": "cfg"}`)
	res = runInit(t, "", nil, testdata(t, "messages"), "--config-file", cfg, "--output-dir", out)
	mustSucceed(t, res)
	assertEqual(t, res.stderr, "Welcome, cfg!\n"+defaultSuccessMessage+"\n")
}

func TestMissingKeyInFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	res := runInit(t, "", nil, testdata(t, "missingkey"), "--output-dir", out)
	mustFail(t, res, `failed to compute file content for bar.txt.tmpl. variable "does_not_exist" not defined`)
}

func TestSymlinkedDirectoryIsRejected(t *testing.T) {
	src := fixture(t, "modes")
	if err := os.Mkdir(filepath.Join(src, "template", "shared"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("shared", filepath.Join(src, "template", "linked")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	mustFail(t, runInit(t, "", nil, src, "--output-dir", out), "linked: symbolic links to directories are not supported in templates")
}

func TestNotATemplate(t *testing.T) {
	res := runInit(t, "", nil, t.TempDir(), "--output-dir", filepath.Join(t.TempDir(), "out"))
	mustFail(t, res, "not a bundle template: expected to find a template schema file at databricks_template_schema.json")
}

func TestWarehousePathFormat(t *testing.T) {
	dir := t.TempDir()
	res := runInit(t, "", nil, testdata(t, "warehouse"), "--output-dir", filepath.Join(dir, "a"))
	mustFailContaining(t, res, "property warehouse has format \"warehouse_path\"", "DATABRICKS_BUNDLE_INIT_WAREHOUSE_ID")

	env := map[string]string{"DATABRICKS_BUNDLE_INIT_WAREHOUSE_ID": "abc123"}
	mustSucceed(t, runInit(t, "", env, testdata(t, "warehouse"), "--output-dir", filepath.Join(dir, "b")))
	assertEqual(t, readFile(t, filepath.Join(dir, "b", "out.txt")), "http_path: /sql/1.0/warehouses/abc123\n")

	cfg := writeFile(t, dir, "input.json", `{"warehouse": "/sql/1.0/warehouses/fromconfig"}`)
	mustSucceed(t, runInit(t, "", nil, testdata(t, "warehouse"), "--config-file", cfg, "--output-dir", filepath.Join(dir, "c")))
	assertEqual(t, readFile(t, filepath.Join(dir, "c", "out.txt")), "http_path: /sql/1.0/warehouses/fromconfig\n")
}

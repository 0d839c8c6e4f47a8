package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// binPath is the bundle-init binary built once by TestMain; end-to-end tests
// run it as a separate process, exactly as the project's test-suite does.
var binPath string

func TestMain(m *testing.M) {
	// File-mode assertions assume the usual umask.
	syscall.Umask(0o022)
	dir, err := os.MkdirTemp("", "bundle-init-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "bundle-init")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building bundle-init:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// envKnobs are the variables the stand-in reads; they are cleared for every
// run so the developer's environment cannot leak into a test.
var envKnobs = []string{
	envHost, envUserName, envDisplayName, envDefaultCatalog, envRecordHistory,
	"DATABRICKS_BUNDLE_INIT_WAREHOUSE_ID", "BUNDLE_INIT_CLI_VERSION", envStrictConfig,
}

// runInit runs the binary in dir (if not empty) with a clean environment
// plus env, stdin closed (so not a TTY).
func runInit(t *testing.T, dir string, env map[string]string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !contains(envKnobs, name) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("running bundle-init: %v", err)
	}
	return res
}

// mustSucceed fails the test unless the run exited 0.
func mustSucceed(t *testing.T, res result) {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("bundle-init failed (exit %d)\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
}

// mustFail asserts a non-zero exit whose stderr is exactly "Error: <msg>\n"
// (after any welcome message).
func mustFail(t *testing.T, res result, msg string) {
	t.Helper()
	if res.code == 0 {
		t.Fatalf("bundle-init succeeded, want error %q\nstderr: %s", msg, res.stderr)
	}
	if !strings.HasSuffix(res.stderr, "Error: "+msg+"\n") {
		t.Fatalf("stderr:\n%s\nwant it to end with:\nError: %s", res.stderr, msg)
	}
}

// mustFailContaining asserts a non-zero exit with an error containing parts.
func mustFailContaining(t *testing.T, res result, parts ...string) {
	t.Helper()
	if res.code == 0 {
		t.Fatalf("bundle-init succeeded, want an error containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(res.stderr, p) {
			t.Fatalf("stderr:\n%s\nwant it to contain %q", res.stderr, p)
		}
	}
}

// fixture copies testdata/<name> into a fresh temporary directory, so a test
// can add what git cannot hold (empty directories, file modes, symlinks).
func fixture(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	copyTree(t, filepath.Join("testdata", name), dst)
	return dst
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tree lists everything under root as sorted slash paths; directories end
// in "/".
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func assertEqual[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("got:\n%v\nwant:\n%v", got, want)
	}
}

func assertLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func contains(list []string, s string) bool {
	for _, item := range list {
		if item == s {
			return true
		}
	}
	return false
}

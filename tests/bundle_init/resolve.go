package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// builtinTemplates are the CLI's built-in template names and aliases, which
// it resolves before local paths. Their sources are embedded in the CLI and
// are not available offline.
var builtinTemplates = map[string]bool{
	"default-python": true, "default-sql": true, "default-minimal": true, "empty": true,
	"default-scala": true, "dbt-sql": true, "pydabs": true, "mlops-stacks": true, "mlops-stack": true,
	"lakeflow-pipelines": true, "lakeflow-integrations": true, "cli-pipelines": true,
}

// resolveTemplate returns the local directory holding the template root (with
// databricks_template_schema.json) and a cleanup function. Git URLs are cloned
// into a temporary directory and --template-dir is joined under the clone;
// --template-dir is ignored for local paths, as in the CLI.
func resolveTemplate(opts options) (string, func(), error) {
	noop := func() {}
	p := opts.templatePath
	if builtinTemplates[p] {
		return "", noop, fmt.Errorf("built-in template %q is not available in the offline bundle-init stand-in; pass the path of a local template directory", p)
	}
	for _, prefix := range []string{"http://", "git://", "ftp://", "ftps://"} {
		if strings.HasPrefix(p, prefix) {
			return "", noop, fmt.Errorf("unsupported protocol in Git URL %q: only https://, ssh://, git@ URLs are supported", p)
		}
	}
	if !strings.HasPrefix(p, "https://") && !strings.HasPrefix(p, "ssh://") && !strings.HasPrefix(p, "git@") {
		return p, noop, nil
	}

	repoDir, err := os.MkdirTemp("", repoName(p)+"-*")
	if err != nil {
		return "", noop, err
	}
	cleanup := func() { os.RemoveAll(repoDir) }
	ref := opts.branch
	if opts.tag != "" {
		ref = opts.tag
	}
	if err := gitClone(p, ref, repoDir); err != nil {
		cleanup()
		return "", noop, err
	}
	return filepath.Join(repoDir, opts.templateDir), cleanup, nil
}

// repoName is the last non-empty "/"-separated part of a Git URL.
func repoName(url string) string {
	parts := strings.Split(strings.TrimRight(url, "/"), "/")
	return parts[len(parts)-1]
}

// gitClone runs a shallow clone without tags and retries a full clone for
// servers that do not support shallow clones ("dumb http").
func gitClone(url, ref, target string) error {
	err := runGitClone(url, ref, target, true)
	if err != nil && strings.Contains(err.Error(), "dumb http") {
		if rmErr := os.RemoveAll(target); rmErr != nil {
			return rmErr
		}
		return runGitClone(url, ref, target, false)
	}
	return err
}

func runGitClone(url, ref, target string, shallow bool) error {
	args := []string{"clone", url, target, "--no-tags"}
	if ref != "" {
		args = append(args, "--branch", ref)
	}
	if shallow {
		args = append(args, "--depth=1")
	}
	cmd := exec.Command("git", args...)
	// Fail instead of waiting for credentials: init is never interactive here.
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if errors.Is(err, exec.ErrNotFound) {
		return errors.New("please install git CLI to clone a repository")
	}
	if err != nil {
		return fmt.Errorf("git clone failed: git %s: %w. %s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

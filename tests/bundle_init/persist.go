package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// persistToDisk writes the computed files that no skip glob matches, after
// checking that none of them exists yet (nothing is written on a conflict),
// then creates every walked directory, even an empty one. Files rendered
// empty or blank are written too. It returns the written files' paths,
// sorted and slash-separated.
func (r *renderer) persistToDisk(outputDir string) ([]string, error) {
	root := filepath.Clean(outputDir)

	var keep []*file
	for _, f := range r.files {
		skipped, err := isSkipped(f.relPath, r.skipPatterns)
		if err != nil {
			return nil, err
		}
		if !skipped {
			keep = append(keep, f)
		}
	}

	for _, f := range keep {
		abs, err := joinRoot(root, f.relPath)
		if err == nil {
			_, err = os.Stat(abs)
			if err == nil {
				return nil, fmt.Errorf("failed to initialize template, one or more files already exist: %s", f.relPath)
			}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("error while verifying file %s does not already exist: %w", f.relPath, err)
		}
	}

	outputs := []string{}
	for _, f := range keep {
		if err := r.writeFile(root, f); err != nil {
			return nil, err
		}
		outputs = append(outputs, filepath.ToSlash(f.relPath))
	}

	for _, dir := range r.visited {
		abs, err := joinRoot(root, dir)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, err
		}
	}

	sort.Strings(outputs)
	return outputs, nil
}

// writeFile creates one file exclusively with its computed mode (the umask
// applies), creating parent directories with 0755.
func (r *renderer) writeFile(root string, f *file) error {
	content := f.content
	if f.srcPath != "" {
		var err error
		if content, err = fs.ReadFile(r.srcFS, f.srcPath); err != nil {
			return err
		}
	}
	abs, err := joinRoot(root, f.relPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("file already exists: %s", abs)
	}
	if err != nil {
		return err
	}
	_, err = out.Write(content)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// joinRoot resolves a rendered relative path inside the output directory and
// refuses paths that leave it.
func joinRoot(root, rel string) (string, error) {
	abs := filepath.Join(root, filepath.FromSlash(rel))
	prefix := root
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	if abs != root && !strings.HasPrefix(abs, prefix) {
		return "", fmt.Errorf("relative path escapes root: %s", rel)
	}
	return abs, nil
}

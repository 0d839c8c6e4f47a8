package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"
)

const templateExtension = ".tmpl"

// file is one computed output file.
type file struct {
	relPath string      // rendered path, relative to the output directory
	perm    fs.FileMode // source permissions | 0o200
	content []byte      // rendered content of a .tmpl file
	srcPath string      // raw path of a file copied verbatim (not .tmpl)
}

// walk visits template/ breadth-first. In each directory all files are
// computed before any subdirectory is dequeued, so a {{skip}} in a file can
// drop a sibling directory before it is walked. A skipped directory's files
// are never executed; a file that is only skipped itself is still executed
// (and its errors still fail the init), then dropped at persist time.
func (r *renderer) walk() error {
	walkTmpl, err := r.base.Clone()
	if err != nil {
		return err
	}
	r.current = walkTmpl
	defer func() { r.current = r.base }()

	queue := []string{"."}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]

		rendered, err := r.executeTemplate(dir)
		if err != nil {
			return err
		}
		skipped, err := isSkipped(rendered, r.skipPatterns)
		if err != nil {
			return err
		}
		if skipped {
			continue
		}
		r.visited = append(r.visited, rendered)

		// `skip` globs are relative to the directory of the calling file.
		walkTmpl.Funcs(template.FuncMap{"skip": r.skipFunc(dir)})

		entries, err := fs.ReadDir(r.srcFS, dir)
		if err != nil {
			return err
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, entry := range entries {
			p := path.Join(dir, entry.Name())
			if entry.IsDir() {
				queue = append(queue, p)
				continue
			}
			f, err := r.computeFile(p)
			if err != nil {
				return err
			}
			r.files = append(r.files, f)
		}
	}
	return nil
}

// skipFunc returns the {{skip "glob"}} helper for files in dir (a raw,
// unrendered path). The glob is joined to dir, rendered, and recorded once.
func (r *renderer) skipFunc(dir string) func(string) (string, error) {
	return func(relPattern string) (string, error) {
		pattern, err := r.executeTemplate(path.Join(dir, relPattern))
		if err != nil {
			return "", err
		}
		for _, p := range r.skipPatterns {
			if p == pattern {
				return "", nil
			}
		}
		r.skipPatterns = append(r.skipPatterns, pattern)
		return "", nil
	}
}

// computeFile renders a file's path and, for .tmpl files, its content.
func (r *renderer) computeFile(rawPath string) (*file, error) {
	info, err := fs.Stat(r.srcFS, rawPath)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return nil, fmt.Errorf("%s: symbolic links to directories are not supported in templates", rawPath)
	}
	// The owner can always write the files it gets.
	perm := info.Mode().Perm() | 0o200

	relPath, err := r.executeTemplate(rawPath)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(rawPath, templateExtension) {
		return &file{relPath: relPath, perm: perm, srcPath: rawPath}, nil
	}
	relPath = strings.TrimSuffix(relPath, templateExtension)

	raw, err := fs.ReadFile(r.srcFS, rawPath)
	if err != nil {
		return nil, err
	}
	content, err := r.executeTemplate(string(raw))
	var failErr failError
	if errors.As(err, &failErr) {
		return nil, failErr
	}
	if err != nil {
		return nil, fmt.Errorf("failed to compute file content for %s. %w", rawPath, err)
	}
	return &file{relPath: relPath, perm: perm, content: []byte(content)}, nil
}

// isSkipped matches a rendered path against the skip globs with path.Match:
// `*` does not cross `/` and there is no `**`.
func isSkipped(p string, patterns []string) (bool, error) {
	for _, pattern := range patterns {
		match, err := path.Match(pattern, p)
		if err != nil {
			return false, err
		}
		if match {
			return true, nil
		}
	}
	return false, nil
}

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"strings"
	"text/template"
)

// renderer executes every template of an init: defaults, messages, paths,
// skip patterns and file contents all go through executeTemplate.
type renderer struct {
	// values is the "dot" of every template; it is the config's map, so
	// defaults assigned after the renderer was built are visible.
	values map[string]any

	// base has the helpers and the shared and template library defines. It
	// has no `skip`, so templates outside the walk fail to parse if they call
	// it.
	base *template.Template

	// current is what executeTemplate clones: base, or during the walk a
	// clone of base with `skip` bound to the directory being walked.
	current *template.Template

	// srcFS is the template/ tree.
	srcFS fs.FS

	files        []*file  // computed files, in walk order
	skipPatterns []string // rendered globs added by {{skip}}
	visited      []string // rendered paths of walked directories
}

// missingKeyRe recognises text/template's missingkey=error message, which the
// CLI rewrites to `variable "x" not defined`.
var missingKeyRe = regexp.MustCompile(`map has no entry for key "(.*)"`)

// newRenderer builds the base template: helpers, then the shared library
// defines, then the template's own library/* (non-recursive, any file name),
// so that a library define overrides a shared one with the same name.
func newRenderer(values map[string]any, treeRoot string) (*renderer, error) {
	base := template.New("").Funcs(helperFuncs())
	for _, name := range sortedKeys(sharedLibrary) {
		if _, err := base.New(name).Parse(sharedLibrary[name]); err != nil {
			return nil, err
		}
	}

	treeFS := os.DirFS(treeRoot)
	matches, err := fs.Glob(treeFS, path.Join(libraryDirName, "*"))
	if err != nil {
		return nil, err
	}
	// ParseFS fails on an empty match list; a missing library/ is fine.
	if len(matches) > 0 {
		if base, err = base.ParseFS(treeFS, matches...); err != nil {
			return nil, err
		}
	}

	srcFS, err := fs.Sub(treeFS, templateDirName)
	if err != nil {
		return nil, err
	}
	return &renderer{values: values, base: base, current: base, srcFS: srcFS}, nil
}

// executeTemplate renders text with the values, the helpers and the library
// defines, with missingkey=error.
func (r *renderer) executeTemplate(text string) (string, error) {
	tmpl, err := r.current.Clone()
	if err != nil {
		return "", err
	}
	tmpl, err = tmpl.Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("error in %s: %w", text, err)
	}
	var out strings.Builder
	if err := tmpl.Execute(&out, r.values); err != nil {
		var execErr template.ExecError
		if errors.As(err, &execErr) {
			if m := missingKeyRe.FindStringSubmatch(execErr.Err.Error()); m != nil {
				return "", template.ExecError{
					Name: execErr.Name,
					Err:  fmt.Errorf("variable %q not defined", m[1]),
				}
			}
		}
		return "", err
	}
	return out.String(), nil
}

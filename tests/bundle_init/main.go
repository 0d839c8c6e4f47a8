// Command bundle-init is an offline stand-in for `databricks bundle init`.
//
// The real CLI cannot be installed where this project's tests run, so this
// program re-implements its non-interactive path (stdin is never a TTY in
// tests) with the CLI's own engine, text/template, and the CLI's error texts.
// The behaviour it reproduces is that of github.com/databricks/cli: cmd/bundle/init.go
// and libs/template (config.go, helpers.go, renderer.go, materialize.go, writer.go).
//
// Usage (same shape as the CLI):
//
//	bundle-init TEMPLATE_PATH [--config-file F] [--output-dir D]
//	            [--template-dir X] [--tag T | --branch B] [-o text|json]
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const defaultSuccessMessage = "✨ Successfully initialized template"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command and returns the process exit code. Errors are
// printed as "Error: <message>" on stderr, like the CLI does.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "Error: %s\n", err)
		return 1
	}
	outputs, err := initTemplate(opts, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %s\n", err)
		return 1
	}
	if opts.output == "json" {
		b, err := json.MarshalIndent(map[string][]string{"outputs": outputs}, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "Error: %s\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return 0
}

// initTemplate follows the CLI's Materialize flow: load and check the schema,
// read the config file, render the welcome message, assign defaults, validate,
// walk template/, persist, and print the success message. Messages go to log
// (stderr). It returns the written files, relative and slash-separated.
func initTemplate(opts options, log io.Writer) ([]string, error) {
	if opts.tag != "" && opts.branch != "" {
		return nil, errors.New("only one of --tag or --branch can be specified")
	}
	if opts.templatePath == "" {
		return nil, errors.New("prompting is not supported. Please specify the path, name or URL of the template to use")
	}
	root, cleanup, err := resolveTemplate(opts)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	schema, treeRoot, err := loadTemplate(root)
	if err != nil {
		return nil, err
	}
	if err := checkTemplateSchema(schema); err != nil {
		return nil, err
	}

	outputDir, err := filepath.Abs(opts.outputDir)
	if err != nil {
		return nil, err
	}

	cfg := newConfig(schema)
	if opts.configFile != "" {
		if err := cfg.assignValuesFromFile(opts.configFile); err != nil {
			return nil, err
		}
	}

	r, err := newRenderer(cfg.values, treeRoot)
	if err != nil {
		return nil, err
	}

	// The welcome message only sees helpers and config-file values: defaults
	// are assigned after it.
	if schema.WelcomeMessage != "" {
		msg, err := r.executeTemplate(schema.WelcomeMessage)
		if err != nil {
			return nil, err
		}
		fmt.Fprintln(log, msg)
	}

	if err := cfg.assignDefaultValues(r); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	if err := r.walk(); err != nil {
		return nil, err
	}
	outputs, err := r.persistToDisk(outputDir)
	if err != nil {
		return nil, err
	}

	msg := defaultSuccessMessage
	if schema.SuccessMessage != "" {
		msg, err = r.executeTemplate(schema.SuccessMessage)
		if err != nil {
			return nil, err
		}
	}
	fmt.Fprintln(log, msg)
	return outputs, nil
}

package main

// sharedLibrary stands in for the CLI's embedded common library, which
// defines agents_md, claude_md and experimental_record_deployment_history for
// every template, custom ones included. The CLI's bodies are not reproduced
// here (only their names and their override semantics matter to templates);
// a template's own library/ define with the same name replaces them.
var sharedLibrary = map[string]string{
	"agents_md.tmpl": `{{define "agents_md" -}}
# Agent instructions

This project is a Databricks Asset Bundle; databricks.yml is its entry point.

- Validate changes with ` + "`databricks bundle validate`" + `.
- Deploy with ` + "`databricks bundle deploy`" + ` and run resources with ` + "`databricks bundle run`" + `.
{{- end}}`,

	"claude_md.tmpl": `{{define "claude_md" -}}
# Claude instructions

Read AGENTS.md for this project's conventions.
{{- end}}`,

	"experimental_record_deployment_history.tmpl": `{{define "experimental_record_deployment_history" -}}
{{- if record_deployment_history}}
experimental:
  record_deployment_history: true
{{- end}}
{{- end}}`,
}

package main

import (
	"path/filepath"
	"testing"
)

// schemaTemplate builds a template root from testdata/schema-checks/<name>.json
// with an empty template/ directory.
func schemaTemplate(t *testing.T, name string) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root, schemaFileName, readFile(t, filepath.Join("testdata", "schema-checks", name+".json")))
	writeFile(t, root, "template/.keep", "")
	return root
}

func TestSchemaChecks(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{"type-object", "property type object is not supported by bundle templates"},
		{"type-array", "property type array is not supported by bundle templates"},
		{"type-int", `failed to load schema: type int is not a recognized json schema type. Please use "integer" instead`},
		{"type-bool", `failed to load schema: type bool is not a recognized json schema type. Please use "boolean" instead`},
		{"type-float", `failed to load schema: type float is not a recognized json schema type. Please use "number" instead`},
		{"type-missing", "failed to load schema: type  is not a recognized json schema type"},
		{"missing-description", "template property name is missing a description"},
		{"default-wrong-type", "failed to load schema: type validation for default value of property name failed: expected type string, but value is 1"},
		{"default-not-in-enum", "failed to load schema: list of enum values for property choice does not contain default value maybe: [yes no]"},
		{"enum-wrong-type", "failed to load schema: type validation for enum at index 1 failed for property choice: expected type string, but value is 2"},
		{"integer-default-fraction", "failed to load schema: failed to parse default value for property n: expected integer value, got: 1.5"},
		{"pattern-non-string", `failed to load schema: property "n" has a non-empty regex pattern "^[0-9]+$" specified. Patterns are only supported for string properties`},
		{"pattern-invalid", "failed to load schema: invalid regex pattern \"(\" provided for property \"name\": error parsing regexp: missing closing ): `(`"},
		{"enum-pattern-mismatch", `failed to load schema: enum value "NO" at index 1 for property "choice" does not match specified regex pattern: "^[a-z]+$"`},
		{"skip-prompt-if-no-default", `failed to load schema: property "hidden" has a skip_prompt_if clause but no default value`},
		{"min-version-invalid", `failed to load schema: invalid minimum CLI version "1.0.0" specified. Please specify the version in the format v0.0.0`},
		{"min-version-too-high", `failed to load schema: minimum CLI version "v99.0.0" is greater than current CLI version "v1.13.0". Please upgrade your current Databricks CLI`},
		{"version-2", "template schema version 2 is not supported by this version of the CLI. Please upgrade your CLI to the latest version"},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			root := schemaTemplate(t, tc.schema)
			out := filepath.Join(root, "out")
			mustFail(t, runInit(t, "", nil, root, "--output-dir", out), tc.want)
			assertLines(t, tree(t, out), nil)
		})
	}
}

func TestSchemaChecksThatPass(t *testing.T) {
	for _, tc := range []struct {
		schema, version string
	}{
		{"min-version-ok", ""},
		{"version-1", ""},
		{"min-version-too-high", "v99.0.0"},
		{"min-version-too-high", "100.0.0"},
		// Development builds skip the check, even for a malformed version.
		{"min-version-too-high", devVersion},
		{"min-version-invalid", devVersion},
	} {
		t.Run(tc.schema+"@"+tc.version, func(t *testing.T) {
			root := schemaTemplate(t, tc.schema)
			env := map[string]string{}
			if tc.version != "" {
				env["BUNDLE_INIT_CLI_VERSION"] = tc.version
			}
			mustSucceed(t, runInit(t, "", env, root, "--output-dir", filepath.Join(root, "out")))
		})
	}
}

func TestCLIVersionOverrideInError(t *testing.T) {
	root := schemaTemplate(t, "min-version-too-high")
	env := map[string]string{"BUNDLE_INIT_CLI_VERSION": "98.9.9"}
	mustFail(t, runInit(t, "", env, root, "--output-dir", filepath.Join(root, "out")),
		`failed to load schema: minimum CLI version "v99.0.0" is greater than current CLI version "v98.9.9". Please upgrade your current Databricks CLI`)
}

func TestConfigFileValidation(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"enum", `{"choice": "maybe"}`, "expected value of property choice to be one of [yes no]. Found: maybe"},
		{"pattern with message", `{"name": "-bad"}`, `invalid value for name: "-bad". Invalid name.`},
		{"pattern fallback message", `{"code": "x1"}`, `invalid value for code: "x1". Expected to match regex pattern: ^[0-9]+$`},
		{"integer from string", `{"count": "abc"}`, `failed to parse property count: cannot convert "abc" to an integer`},
		{"integer from fraction", `{"count": 1.5}`, "failed to parse property count: expected integer value, got: 1.5"},
		{"string type", `{"name": 12}`, "incorrect type for property name: expected type string, but value is 12"},
		{"boolean type", `{"flag": "yes"}`, `incorrect type for property flag: expected type boolean, but value is "yes"`},
		{"number type", `{"ratio": "1.5"}`, `incorrect type for property ratio: expected type float, but value is "1.5"`},
		{"const", `{"fixed": "other"}`, "expected value of property fixed to be const. Found: other"},
		{"not an object", `[1, 2]`, "json: cannot unmarshal array into Go value of type map[string]interface {}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, dir, "input.json", tc.config)
			out := filepath.Join(dir, "out")
			res := runInit(t, "", nil, testdata(t, "validation"), "--config-file", cfg, "--output-dir", out)
			mustFail(t, res, "failed to load config from file "+cfg+": "+tc.want)
			assertLines(t, tree(t, out), nil)
		})
	}
}

// The CLI drops config-file keys that are not schema properties
// (libs/template/config.go, assignValuesFromFile); so does the stand-in unless
// BUNDLE_INIT_STRICT_CONFIG is set, which the template's own tests set so that a
// stale or misspelt key in a test input cannot go unnoticed.
func TestUnknownConfigKeyIsIgnoredLikeTheCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "input.json", `{"count": 1, "include_notebook": "yes"}`)
	out := filepath.Join(dir, "out")
	mustSucceed(t, runInit(t, "", nil, testdata(t, "validation"), "--config-file", cfg, "--output-dir", out))
	assertEqual(t, readFile(t, filepath.Join(out, "values.txt")), "name=ok code=123 choice=yes count=1 ratio=1.1 flag=true derived=1 fixed=const\ncount>2: false flag-and: true\n")
}

func TestUnknownConfigKeyIsRejectedWhenStrict(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "input.json", `{"name": "ok", "include_notebook": "yes"}`)
	out := filepath.Join(dir, "out")
	env := map[string]string{envStrictConfig: "1"}
	res := runInit(t, "", env, testdata(t, "validation"), "--config-file", cfg, "--output-dir", out)
	mustFail(t, res, "failed to load config from file "+cfg+`: unknown property "include_notebook" (not defined in the template schema)`)
	assertLines(t, tree(t, out), nil)
}

func TestConfigFileMissing(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "missing.json")
	res := runInit(t, "", nil, testdata(t, "validation"), "--config-file", cfg, "--output-dir", t.TempDir())
	mustFail(t, res, "failed to load config from file "+cfg+": open "+cfg+": no such file or directory")
}

func TestFinalValidationOfRenderedDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "input.json", `{"count": 12}`)
	res := runInit(t, "", nil, testdata(t, "validation"), "--config-file", cfg, "--output-dir", filepath.Join(dir, "out"))
	mustFail(t, res, `validation for template input parameters failed. invalid value for derived: "12". derived must be one digit.`)
}

func TestTypedValues(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"defaults", `{}`, "name=ok code=123 choice=yes count=3 ratio=1.1 flag=true derived=3 fixed=const\ncount>2: true flag-and: true\n"},
		{"config", `{"count": 1, "ratio": 2.5, "flag": false, "choice": "no"}`, "name=ok code=123 choice=no count=1 ratio=2.5 flag=false derived=1 fixed=const\ncount>2: false flag-and: false\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, dir, "input.json", tc.config)
			out := filepath.Join(dir, "out")
			mustSucceed(t, runInit(t, "", nil, testdata(t, "validation"), "--config-file", cfg, "--output-dir", out))
			assertEqual(t, readFile(t, filepath.Join(out, "values.txt")), tc.want)
		})
	}
}

func TestMissingRequiredValue(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	mustFail(t, runInit(t, "", nil, testdata(t, "missing-required"), "--output-dir", out),
		"validation for template input parameters failed. no value provided for required property name")

	cfg := writeFile(t, dir, "input.json", `{"name": "given"}`)
	mustSucceed(t, runInit(t, "", nil, testdata(t, "missing-required"), "--config-file", cfg, "--output-dir", out))
	assertEqual(t, readFile(t, filepath.Join(out, "name.txt")), "given\n")
}

func TestOrderedProperties(t *testing.T) {
	one, minus := 1, -1
	s := &Schema{Properties: map[string]*Schema{
		"z": {Order: &one}, "b": {}, "a": {}, "y": {Order: &one}, "m": {Order: &minus},
	}}
	var names []string
	for _, p := range orderedProperties(s) {
		names = append(names, p.name)
	}
	assertLines(t, names, []string{"m", "y", "z", "a", "b"})
}

func TestSemver(t *testing.T) {
	for _, v := range []string{"v1", "v1.2", "v1.2.3", "v1.2.3-rc.1", "v1.2.3+build.5", "v0.0.0-dev"} {
		if _, ok := parseSemver(v); !ok {
			t.Errorf("%s should be valid", v)
		}
	}
	for _, v := range []string{"", "1.2.3", "v1.2.3.4", "v01.2.3", "v1.2-rc", "v1.2.3-", "v1.2.3-01", "vx"} {
		if _, ok := parseSemver(v); ok {
			t.Errorf("%s should be invalid", v)
		}
	}
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"v1.2.3", "v1.2.3", 0},
		{"v1", "v1.0.0", 0},
		{"v1.10.0", "v1.9.0", 1},
		{"v0.285.0", "v1.13.0", -1},
		{"v1.0.0-rc.1", "v1.0.0", -1},
		{"v1.0.0-rc.2", "v1.0.0-rc.10", -1},
		{"v1.0.0-alpha", "v1.0.0-1", 1},
		{"v1.0.0+a", "v1.0.0+b", 0},
		{"bad", "v0.0.1", -1},
	} {
		if got := compareSemver(tc.a, tc.b); got != tc.want {
			t.Errorf("compareSemver(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestValidateInstanceAnyOfAndAdditionalProperties(t *testing.T) {
	s := &Schema{
		Properties: map[string]*Schema{"a": {Type: stringType}, "b": {Type: stringType}},
		AnyOf: []*Schema{
			{Properties: map[string]*Schema{"a": {Const: "x"}}},
			{Properties: map[string]*Schema{"b": {Const: "y"}}},
		},
	}
	if err := validateInstance(s, map[string]any{"a": "x", "b": "n"}); err != nil {
		t.Fatal(err)
	}
	err := validateInstance(s, map[string]any{"a": "n", "b": "n"})
	assertEqual(t, err.Error(), "instance does not match any of the schemas in anyOf")

	s.AnyOf = []*Schema{}
	assertEqual(t, validateInstance(s, nil).Error(), "anyOf must contain at least one schema")

	s = &Schema{Properties: map[string]*Schema{"a": {}}, AdditionalProperties: false}
	assertEqual(t, validateInstance(s, map[string]any{"zz": 1}).Error(), "property zz is not defined in the schema")
	// Arrays and objects never equal an enum value or a const, and do not panic.
	s = &Schema{Properties: map[string]*Schema{"a": {Enum: []any{"x"}}}}
	assertEqual(t, validateInstance(s, map[string]any{"a": []any{"x"}}).Error(), "expected value of property a to be one of [x]. Found: [x]")
}

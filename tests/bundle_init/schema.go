package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
)

const (
	schemaFileName      = "databricks_template_schema.json"
	templateDirName     = "template"
	libraryDirName      = "library"
	latestSchemaVersion = 1
)

// JSON schema types accepted in template schemas.
const (
	stringType  = "string"
	booleanType = "boolean"
	integerType = "integer"
	numberType  = "number"
	objectType  = "object"
	arrayType   = "array"
)

// Schema is the subset of JSON schema, plus the CLI's extensions, that
// databricks_template_schema.json may use. The same type describes the
// template schema, its properties and the sub-schemas of skip_prompt_if and
// anyOf. Unknown keys (such as "//" comments) are ignored, as in the CLI.
type Schema struct {
	Type                 string             `json:"type,omitempty"`
	Description          string             `json:"description,omitempty"`
	Default              any                `json:"default,omitempty"`
	Enum                 []any              `json:"enum,omitempty"`
	Const                any                `json:"const,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	Format               string             `json:"format,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	AnyOf                []*Schema          `json:"anyOf,omitempty"`
	AdditionalProperties any                `json:"additionalProperties,omitempty"`

	// The CLI's extensions.
	Order                      *int    `json:"order,omitempty"`
	PatternMatchFailureMessage string  `json:"pattern_match_failure_message,omitempty"`
	SkipPromptIf               *Schema `json:"skip_prompt_if,omitempty"`
	WelcomeMessage             string  `json:"welcome_message,omitempty"`
	SuccessMessage             string  `json:"success_message,omitempty"`
	MinDatabricksCliVersion    string  `json:"min_databricks_cli_version,omitempty"`
	Version                    *int    `json:"version,omitempty"`
	TemplateDir                string  `json:"template_dir,omitempty"`
}

// loadTemplate reads the schema at the template root and returns it with the
// directory that holds template/ and library/ (the root itself, or the
// schema's template_dir resolved against it).
func loadTemplate(root string) (*Schema, string, error) {
	schema, err := loadSchema(filepath.Join(root, schemaFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("not a bundle template: expected to find a template schema file at %s", schemaFileName)
	}
	if err != nil {
		return nil, "", fmt.Errorf("failed to load schema: %w", err)
	}
	if schema.TemplateDir == "" {
		return schema, root, nil
	}
	treeRoot := filepath.Join(root, schema.TemplateDir)
	if _, err := os.Stat(treeRoot); os.IsNotExist(err) {
		return nil, "", fmt.Errorf("template directory %s not found", treeRoot)
	}
	return schema, treeRoot, nil
}

// loadSchema parses a schema file, converts integer defaults, consts and
// enums from JSON's float64 to int64 (top-level properties only, as the CLI
// does) and runs the CLI's load-time checks.
func loadSchema(path string) (*Schema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	schema := &Schema{}
	if err := json.Unmarshal(b, schema); err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(schema.Properties) {
		p := schema.Properties[name]
		if p.Type != integerType {
			continue
		}
		if p.Default != nil {
			if p.Default, err = toInteger(p.Default); err != nil {
				return nil, fmt.Errorf("failed to parse default value for property %s: %w", name, err)
			}
		}
		if p.Const != nil {
			if p.Const, err = toInteger(p.Const); err != nil {
				return nil, fmt.Errorf("failed to parse const value for property %s: %w", name, err)
			}
		}
		for i, v := range p.Enum {
			if p.Enum[i], err = toInteger(v); err != nil {
				return nil, fmt.Errorf("failed to parse enum value %v at index %v for property %s: %w", v, i, name, err)
			}
		}
	}
	return schema, schema.validate()
}

// validate runs the CLI's load-time schema checks in the CLI's order. Each
// check looks at every property before the next check runs; properties are
// visited by name so that the reported error is deterministic.
func (s *Schema) validate() error {
	names := sortedKeys(s.Properties)
	perProperty := []func(name string, p *Schema) error{
		checkPropertyType,
		checkDefaultType,
		checkEnumTypes,
		checkConstType,
		checkDefaultInEnum,
		checkPattern,
	}
	for _, check := range perProperty {
		for _, name := range names {
			if err := check(name, s.Properties[name]); err != nil {
				return err
			}
		}
	}
	if err := checkMinCLIVersion(s.MinDatabricksCliVersion, currentVersion()); err != nil {
		return err
	}
	for _, name := range names {
		p := s.Properties[name]
		if p.SkipPromptIf != nil && p.Default == nil {
			return fmt.Errorf("property %q has a skip_prompt_if clause but no default value", name)
		}
	}
	return nil
}

func checkPropertyType(_ string, p *Schema) error {
	switch p.Type {
	case numberType, booleanType, stringType, integerType, objectType, arrayType:
		return nil
	case "int", "int32", "int64":
		return fmt.Errorf("type %s is not a recognized json schema type. Please use \"integer\" instead", p.Type)
	case "float", "float32", "float64":
		return fmt.Errorf("type %s is not a recognized json schema type. Please use \"number\" instead", p.Type)
	case "bool":
		return fmt.Errorf("type %s is not a recognized json schema type. Please use \"boolean\" instead", p.Type)
	default:
		return fmt.Errorf("type %s is not a recognized json schema type", p.Type)
	}
}

func checkDefaultType(name string, p *Schema) error {
	if p.Default == nil {
		return nil
	}
	if err := validateType(p.Default, p.Type); err != nil {
		return fmt.Errorf("type validation for default value of property %s failed: %w", name, err)
	}
	return nil
}

func checkEnumTypes(name string, p *Schema) error {
	for i, v := range p.Enum {
		if err := validateType(v, p.Type); err != nil {
			return fmt.Errorf("type validation for enum at index %v failed for property %s: %w", i, name, err)
		}
	}
	return nil
}

func checkConstType(name string, p *Schema) error {
	if p.Const == nil {
		return nil
	}
	if err := validateType(p.Const, p.Type); err != nil {
		return fmt.Errorf("type validation for const value of property %s failed: %w", name, err)
	}
	return nil
}

func checkDefaultInEnum(name string, p *Schema) error {
	if p.Default == nil || p.Enum == nil || containsValue(p.Enum, p.Default) {
		return nil
	}
	return fmt.Errorf("list of enum values for property %s does not contain default value %v: %v", name, p.Default, p.Enum)
}

func checkPattern(name string, p *Schema) error {
	if p.Pattern == "" {
		return nil
	}
	if p.Type != stringType {
		return fmt.Errorf("property %q has a non-empty regex pattern %q specified. Patterns are only supported for string properties", name, p.Pattern)
	}
	re, err := regexp.Compile(p.Pattern)
	if err != nil {
		return fmt.Errorf("invalid regex pattern %q provided for property %q: %w", p.Pattern, name, err)
	}
	for i, v := range p.Enum {
		if !re.MatchString(v.(string)) {
			return fmt.Errorf("enum value %q at index %v for property %q does not match specified regex pattern: %q", v, i, name, p.Pattern)
		}
	}
	return nil
}

// checkTemplateSchema holds the checks the CLI runs after loading the schema:
// bundle templates cannot use object or array properties, the schema version
// must be supported, and every property needs a description.
func checkTemplateSchema(s *Schema) error {
	names := sortedKeys(s.Properties)
	for _, name := range names {
		if t := s.Properties[name].Type; t == arrayType || t == objectType {
			return fmt.Errorf("property type %s is not supported by bundle templates", t)
		}
	}
	if s.Version != nil && *s.Version > latestSchemaVersion {
		return fmt.Errorf("template schema version %d is not supported by this version of the CLI. Please upgrade your CLI to the latest version", *s.Version)
	}
	for _, name := range names {
		if s.Properties[name].Description == "" {
			return fmt.Errorf("template property %s is missing a description", name)
		}
	}
	// Input values must be schema properties.
	s.AdditionalProperties = false
	return nil
}

// property pairs a property's name with its schema.
type property struct {
	name   string
	schema *Schema
}

// orderedProperties sorts properties by their `order` (ascending, may be
// negative); properties without `order` come after those with one; ties and
// unordered properties are sorted by name. This order drives default
// assignment and decides which earlier values a templated default can see.
func orderedProperties(s *Schema) []property {
	out := make([]property, 0, len(s.Properties))
	for name, p := range s.Properties {
		out = append(out, property{name, p})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].schema.Order, out[j].schema.Order
		switch {
		case a != nil && b != nil && *a != *b:
			return *a < *b
		case a != nil && b == nil:
			return true
		case a == nil && b != nil:
			return false
		}
		return out[i].name < out[j].name
	})
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// containsValue reports whether list holds v, comparing like sameValue.
func containsValue(list []any, v any) bool {
	for _, item := range list {
		if sameValue(item, v) {
			return true
		}
	}
	return false
}

// sameValue compares with == like the CLI (so int64(1) and float64(1)
// differ), but treats JSON arrays and objects as unequal to everything
// instead of panicking on them.
func sameValue(a, b any) bool {
	for _, v := range []any{a, b} {
		if v != nil && !reflect.TypeOf(v).Comparable() {
			return false
		}
	}
	return a == b
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
)

// envStrictConfig, when set to a non-empty value, makes an unknown key in
// --config-file an error instead of being dropped as the CLI drops it.
const envStrictConfig = "BUNDLE_INIT_STRICT_CONFIG"

// config holds the template's input values: config-file values first, then
// rendered defaults. The renderer shares the same map, so every template sees
// the values assigned so far.
type config struct {
	schema *Schema
	values map[string]any
}

func newConfig(schema *Schema) *config {
	return &config{schema: schema, values: map[string]any{}}
}

// assignValuesFromFile loads --config-file. Config-file values win over
// defaults and are never re-rendered.
func (c *config) assignValuesFromFile(path string) error {
	values, err := c.loadInstance(path)
	if err != nil {
		return fmt.Errorf("failed to load config from file %s: %w", path, err)
	}
	for name, v := range values {
		if _, ok := c.values[name]; !ok {
			c.values[name] = v
		}
	}
	return nil
}

// loadInstance reads a JSON object, converts integer properties to int64 and
// validates it against the schema (types, enum, pattern, const, top-level
// required and anyOf).
//
// Like the CLI (libs/template/config.go, assignValuesFromFile), keys that are
// not schema properties are dropped without a word. With BUNDLE_INIT_STRICT_CONFIG
// set, an unknown key is an error instead, so a stale or misspelt key in a test
// input cannot go unnoticed.
func (c *config) loadInstance(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	instance := map[string]any{}
	if err := json.Unmarshal(b, &instance); err != nil {
		return nil, err
	}
	strict := os.Getenv(envStrictConfig) != ""
	for _, name := range sortedKeys(instance) {
		if _, ok := c.schema.Properties[name]; ok {
			continue
		}
		if strict {
			return nil, fmt.Errorf("unknown property %q (not defined in the template schema)", name)
		}
		delete(instance, name)
	}
	for _, name := range sortedKeys(instance) {
		if c.schema.Properties[name].Type != integerType {
			continue
		}
		n, err := toInteger(instance[name])
		if err != nil {
			return nil, fmt.Errorf("failed to parse property %s: %w", name, err)
		}
		instance[name] = n
	}
	return instance, validateInstance(c.schema, instance)
}

// assignDefaultValues is the non-interactive replacement for prompting: in
// property order, every property without a value gets its default, converted
// to a string, executed as a template (so it sees the config-file values and
// the properties before it) and parsed back to the property's type.
// skip_prompt_if is not consulted: unset properties take their default either
// way.
func (c *config) assignDefaultValues(r *renderer) error {
	for _, p := range orderedProperties(c.schema) {
		if _, ok := c.values[p.name]; ok {
			continue
		}
		if p.schema.Format == "warehouse_path" {
			v, err := warehousePath(p.name)
			if err != nil {
				return err
			}
			c.values[p.name] = v
			continue
		}
		if p.schema.Default == nil {
			continue
		}
		text, err := toString(p.schema.Default, p.schema.Type)
		if err != nil {
			return err
		}
		text, err = r.executeTemplate(text)
		if err != nil {
			return err
		}
		v, err := fromString(text, p.schema.Type)
		if err != nil {
			return err
		}
		c.values[p.name] = v
	}
	return nil
}

// warehousePath stands in for the CLI's SQL warehouse picker, which the CLI
// runs even without a TTY unless the config file supplies the value.
func warehousePath(name string) (string, error) {
	id := os.Getenv("DATABRICKS_BUNDLE_INIT_WAREHOUSE_ID")
	if id == "" {
		return "", fmt.Errorf("property %s has format \"warehouse_path\", which needs a workspace to list SQL warehouses: pass %s in --config-file or set DATABRICKS_BUNDLE_INIT_WAREHOUSE_ID", name, name)
	}
	return "/sql/1.0/warehouses/" + id, nil
}

// validate is the final check before rendering: every property must have a
// value and every value must satisfy the schema.
func (c *config) validate() error {
	var required []string
	for _, p := range orderedProperties(c.schema) {
		required = append(required, p.name)
	}
	c.schema.Required = required
	if err := validateInstance(c.schema, c.values); err != nil {
		return fmt.Errorf("validation for template input parameters failed. %w", err)
	}
	return nil
}

package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
)

// validateInstance checks a value map against a schema with the CLI's checks,
// in the CLI's order: additionalProperties, enum, required, types, pattern,
// const, anyOf. The first error wins. Keys are visited in sorted order (the
// CLI ranges over a Go map, so its choice among several failures is random).
func validateInstance(s *Schema, instance map[string]any) error {
	keys := sortedKeys(instance)
	if s.AdditionalProperties == false {
		for _, k := range keys {
			if _, ok := s.Properties[k]; !ok {
				return fmt.Errorf("property %s is not defined in the schema", k)
			}
		}
	}
	for _, k := range keys {
		p, ok := s.Properties[k]
		if ok && p.Enum != nil && !containsValue(p.Enum, instance[k]) {
			return fmt.Errorf("expected value of property %s to be one of %v. Found: %v", k, p.Enum, instance[k])
		}
	}
	for _, name := range s.Required {
		if _, ok := instance[name]; !ok {
			return fmt.Errorf("no value provided for required property %s", name)
		}
	}
	for _, k := range keys {
		if p, ok := s.Properties[k]; ok {
			if err := validateType(instance[k], p.Type); err != nil {
				return fmt.Errorf("incorrect type for property %s: %w", k, err)
			}
		}
	}
	for _, k := range keys {
		if p, ok := s.Properties[k]; ok {
			if err := validatePatternMatch(k, instance[k], p); err != nil {
				return err
			}
		}
	}
	for _, k := range keys {
		p, ok := s.Properties[k]
		if ok && p.Const != nil && !sameValue(instance[k], p.Const) {
			return fmt.Errorf("expected value of property %s to be %v. Found: %v", k, p.Const, instance[k])
		}
	}
	if s.AnyOf != nil {
		if len(s.AnyOf) == 0 {
			return errors.New("anyOf must contain at least one schema")
		}
		for _, sub := range s.AnyOf {
			if validateInstance(sub, instance) == nil {
				return nil
			}
		}
		return errors.New("instance does not match any of the schemas in anyOf")
	}
	return nil
}

// validateType checks a Go value against a JSON schema type. Unknown types
// (and object/array) accept anything, as in the CLI.
func validateType(v any, typ string) error {
	kind := reflect.Invalid
	if v != nil {
		kind = reflect.TypeOf(v).Kind()
	}
	switch typ {
	case stringType:
		if kind != reflect.String {
			return fmt.Errorf("expected type string, but value is %#v", v)
		}
	case booleanType:
		if kind != reflect.Bool {
			return fmt.Errorf("expected type boolean, but value is %#v", v)
		}
	case numberType:
		if kind != reflect.Float32 && kind != reflect.Float64 {
			return fmt.Errorf("expected type float, but value is %#v", v)
		}
	case integerType:
		switch kind {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			return fmt.Errorf("expected type integer, but value is %#v", v)
		}
	}
	return nil
}

// validatePatternMatch runs a property's (unanchored) pattern on its value.
func validatePatternMatch(name string, value any, p *Schema) error {
	if p.Pattern == "" {
		return nil
	}
	s, ok := value.(string)
	if !ok {
		return fmt.Errorf("invalid value for %s: %v. Expected a value of type string", name, value)
	}
	match, err := regexp.MatchString(p.Pattern, s)
	if err != nil {
		return err
	}
	if match {
		return nil
	}
	msg := p.PatternMatchFailureMessage
	if msg == "" {
		msg = "Expected to match regex pattern: " + p.Pattern
	}
	return fmt.Errorf("invalid value for %s: %q. %s", name, value, msg)
}

// toInteger converts JSON numbers (float64) holding whole values to int64.
func toInteger(v any) (int64, error) {
	switch n := v.(type) {
	case float32:
		if float32(int64(n)) != n {
			return 0, fmt.Errorf("expected integer value, got: %v", v)
		}
		return int64(n), nil
	case float64:
		if float64(int64(n)) != n {
			return 0, fmt.Errorf("expected integer value, got: %v", v)
		}
		return int64(n), nil
	case int:
		return int64(n), nil
	case int32:
		return int64(n), nil
	case int64:
		return n, nil
	default:
		return 0, fmt.Errorf("cannot convert %#v to an integer", v)
	}
}

// toString formats a default value as the text of its template.
func toString(v any, typ string) (string, error) {
	switch typ {
	case booleanType:
		b, ok := v.(bool)
		if !ok {
			return "", fmt.Errorf("expected bool, got: %#v", v)
		}
		return strconv.FormatBool(b), nil
	case stringType:
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("expected string, got: %#v", v)
		}
		return s, nil
	case numberType:
		f, ok := v.(float64)
		if !ok {
			return "", fmt.Errorf("expected float, got: %#v", v)
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	case integerType:
		n, err := toInteger(v)
		if err != nil {
			return "", err
		}
		return strconv.FormatInt(n, 10), nil
	case arrayType, objectType:
		return "", fmt.Errorf("cannot format object of type %s as a string. Value of object: %#v", typ, v)
	default:
		return "", fmt.Errorf("unknown json schema type: %q", typ)
	}
}

// fromString parses a rendered default back into a value of the property's
// type.
func fromString(s, typ string) (any, error) {
	var v any
	var err error
	switch typ {
	case stringType:
		return s, nil
	case booleanType:
		v, err = strconv.ParseBool(s)
	case numberType:
		v, err = strconv.ParseFloat(s, 64)
	case integerType:
		v, err = strconv.ParseInt(s, 10, 64)
	case arrayType, objectType:
		return "", fmt.Errorf("cannot parse string as object of type %s. Value of string: %q", typ, s)
	default:
		return "", fmt.Errorf("unknown json schema type: %q", typ)
	}
	if errors.Is(err, strconv.ErrSyntax) {
		return nil, fmt.Errorf("%q is not a %s", s, typ)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

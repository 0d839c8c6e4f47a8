package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	mathrand "math/rand"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"
)

// failError is returned by {{fail}}; a file that fails reports its message
// bare, without the "failed to compute file content" prefix.
type failError struct{ msg string }

func (e failError) Error() string { return e.msg }

// pair is a key/value built by {{pair}} for {{map}}.
type pair struct {
	k string
	v any
}

// Go 1.19's math/rand is not seeded; the CLI's random_int is nondeterministic.
var rng = mathrand.New(mathrand.NewSource(time.Now().UnixNano()))

// bundleUUID is stable for the whole process, like the CLI's bundle_uuid.
var bundleUUID = newUUID()

// Environment variables that replace the workspace calls of the CLI's helpers.
const (
	envHost           = "DATABRICKS_HOST"
	envUserName       = "DATABRICKS_BUNDLE_INIT_USER_NAME"
	envDisplayName    = "DATABRICKS_BUNDLE_INIT_DISPLAY_NAME"
	envDefaultCatalog = "DATABRICKS_BUNDLE_INIT_DEFAULT_CATALOG"
	envRecordHistory  = "DATABRICKS_BUNDLE_INIT_RECORD_DEPLOYMENT_HISTORY"
)

var errNoWorkspace = errors.New("cannot determine target workspace, please first setup a configuration profile using 'databricks auth login'")

// helperFuncs is the CLI's template function map (skip is added by the walk).
func helperFuncs() template.FuncMap {
	return template.FuncMap{
		"fail": func(format string, args ...any) (any, error) {
			return nil, failError{fmt.Sprintf(format, args...)}
		},
		"url":    url.Parse,
		"regexp": regexp.Compile,
		"random_int": func(n int) int {
			return rng.Intn(n)
		},
		"uuid":        newUUID,
		"bundle_uuid": func() string { return bundleUUID },
		"pair":        func(k string, v any) pair { return pair{k, v} },
		"map": func(pairs ...pair) map[string]any {
			m := map[string]any{}
			for _, p := range pairs {
				m[p.k] = p.v
			}
			return m
		},
		"lower":          strings.ToLower,
		"upper":          strings.ToUpper,
		"path_separator": func() string { return string(os.PathSeparator) },
		"record_deployment_history": func() bool {
			b, _ := strconv.ParseBool(os.Getenv(envRecordHistory))
			return b
		},
		"workspace_host":     workspaceHost,
		"smallest_node_type": smallestNodeType,
		"user_name": func() (string, error) {
			return lookupEnv(envUserName, "the current user's name")
		},
		"short_name": func() (string, error) {
			name, err := lookupEnv(envUserName, "the current user's name")
			if err != nil {
				return "", err
			}
			return shortName(name, os.Getenv(envDisplayName)), nil
		},
		"is_service_principal": func() (bool, error) {
			name, err := lookupEnv(envUserName, "the current user's name")
			if err != nil {
				return false, err
			}
			return isUUID(name), nil
		},
		"default_catalog": func() (string, error) {
			catalog, ok := os.LookupEnv(envDefaultCatalog)
			if !ok {
				return "", missingEnvError(envDefaultCatalog, "the workspace's default catalog (set it to \"\" for a workspace without Unity Catalog)")
			}
			return catalog, nil
		},
	}
}

// lookupEnv returns a required, non-empty variable.
func lookupEnv(name, what string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	return "", missingEnvError(name, what)
}

func missingEnvError(name, what string) error {
	return fmt.Errorf("%s is not set: the offline bundle-init stand-in cannot call the workspace API, so set it to %s", name, what)
}

// workspaceHost returns DATABRICKS_HOST normalised like the SDK does
// (https:// added when there is no scheme, path dropped).
func workspaceHost() (string, error) {
	host := os.Getenv(envHost)
	if host == "" {
		return "", errNoWorkspace
	}
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		return strings.TrimSuffix(host, "/"), nil
	}
	return u.Scheme + "://" + u.Host, nil
}

// smallestNodeType picks the node type by cloud, decided from the host.
func smallestNodeType() (string, error) {
	host, err := workspaceHost()
	if err != nil {
		return "", err
	}
	u, _ := url.Parse(host)
	hostname := strings.ToLower(u.Hostname())
	switch {
	case hasAnySuffix(hostname, ".azuredatabricks.net", ".databricks.azure.cn", ".databricks.azure.us"):
		return "Standard_D3_v2", nil
	case hasAnySuffix(hostname, ".gcp.databricks.com"):
		return "n1-standard-4", nil
	default:
		return "i3.xlarge", nil
	}
}

func hasAnySuffix(s string, suffixes ...string) bool {
	for _, suffix := range suffixes {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}

// shortName derives the CLI's short user name: the part before "@" (of the
// display name for a service principal that has one), lower-cased, every run
// of non-letters/digits turned into one "_", and "_" trimmed at both ends.
func shortName(userName, displayName string) string {
	name := userName
	if isUUID(userName) && displayName != "" {
		name = displayName
	}
	local, _, _ := strings.Cut(name, "@")
	var b strings.Builder
	pendingSep := false
	for _, c := range strings.ToLower(local) {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			if pendingSep && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			b.WriteRune(c)
			continue
		}
		pendingSep = true
	}
	return b.String()
}

// isUUID accepts the forms google/uuid.Parse accepts; the CLI treats a user
// name that is a UUID as a service principal.
func isUUID(s string) bool {
	switch len(s) {
	case 36 + 9:
		if !strings.EqualFold(s[:9], "urn:uuid:") {
			return false
		}
		s = s[9:]
	case 36 + 2:
		if s[0] != '{' || s[len(s)-1] != '}' {
			return false
		}
		s = s[1 : len(s)-1]
	case 32:
		return isHex(s)
	case 36:
	default:
		return false
	}
	if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return isHex(s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

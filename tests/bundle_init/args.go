package main

import (
	"errors"
	"fmt"
	"strings"
)

const usage = `Initialize using a bundle template (offline stand-in for 'databricks bundle init').

Usage:
  bundle-init [TEMPLATE_PATH] [flags]

TEMPLATE_PATH is a local directory holding databricks_template_schema.json, or a
Git repository URL (https://, ssh:// or git@).

Flags:
      --branch string         Git branch to use for template initialization
      --config-file string    JSON file containing key value pairs of input parameters required for template initialization.
  -h, --help                  help for init
      --output-dir string     Directory to write the initialized template to.
      --tag string            Git tag to use for template initialization
      --template-dir string   Directory path within a Git repository containing the template.

Global Flags:
  -o, --output type   output type: text or json (default text)

Workspace helpers read these variables instead of calling a workspace:
  DATABRICKS_HOST                        workspace_host, smallest_node_type
  DATABRICKS_BUNDLE_INIT_USER_NAME       user_name, short_name, is_service_principal
  DATABRICKS_BUNDLE_INIT_DISPLAY_NAME    short_name of a service principal (optional)
  DATABRICKS_BUNDLE_INIT_DEFAULT_CATALOG default_catalog (may be set to "")
  DATABRICKS_BUNDLE_INIT_WAREHOUSE_ID    properties with "format": "warehouse_path"

Stand-in only:
  BUNDLE_INIT_STRICT_CONFIG              when set, an unknown key in --config-file is an error
                                         (the CLI drops it)
`

var errHelp = errors.New("help requested")

// options holds the parsed command line.
type options struct {
	templatePath string
	configFile   string
	outputDir    string
	templateDir  string
	tag          string
	branch       string
	output       string // "text" or "json"
}

// Flags of `bundle init` and the CLI's global flags. Global flags other than
// -o have no effect offline; they are accepted so callers can pass them.
var (
	valueFlags = map[string]bool{
		"config-file": true, "output-dir": true, "template-dir": true,
		"tag": true, "branch": true, "output": true,
		"profile": true, "target": true, "var": true,
		"log-level": true, "log-file": true, "log-format": true, "progress-format": true,
	}
	boolFlags  = map[string]bool{"debug": true, "help": true}
	shorthands = map[byte]string{'o': "output", 'p': "profile", 't': "target", 'h': "help"}
)

// parseArgs parses arguments the way cobra/pflag does for this command:
// flags and the positional TEMPLATE_PATH may be interleaved, "--" ends flags,
// and values may be given as "--flag value", "--flag=value", "-o json" or
// "-ojson".
func parseArgs(args []string) (options, error) {
	opts := options{output: "text"}
	var positional []string
	values := map[string]string{}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		var name, value string
		hasValue := false
		switch {
		case arg == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
			continue
		case strings.HasPrefix(arg, "--"):
			name = arg[2:]
			if k := strings.IndexByte(name, '='); k >= 0 {
				name, value, hasValue = name[:k], name[k+1:], true
			}
			if !valueFlags[name] && !boolFlags[name] {
				return opts, fmt.Errorf("unknown flag: --%s", name)
			}
			if valueFlags[name] && !hasValue {
				if i+1 >= len(args) {
					return opts, fmt.Errorf("flag needs an argument: --%s", name)
				}
				i++
				value = args[i]
			}
		case strings.HasPrefix(arg, "-") && len(arg) > 1:
			long, ok := shorthands[arg[1]]
			if !ok {
				return opts, fmt.Errorf("unknown shorthand flag: '%c' in %s", arg[1], arg)
			}
			name = long
			if valueFlags[name] {
				switch rest := arg[2:]; {
				case strings.HasPrefix(rest, "="):
					value = rest[1:]
				case rest != "":
					value = rest
				case i+1 < len(args):
					i++
					value = args[i]
				default:
					return opts, fmt.Errorf("flag needs an argument: '%c' in %s", arg[1], arg)
				}
			}
		default:
			positional = append(positional, arg)
			continue
		}
		if name == "help" {
			return opts, errHelp
		}
		values[name] = value
	}

	if len(positional) > 1 {
		return opts, fmt.Errorf("accepts at most 1 arg(s), received %d", len(positional))
	}
	if len(positional) == 1 {
		opts.templatePath = positional[0]
	}
	if v, ok := values["output"]; ok {
		if v != "text" && v != "json" {
			return opts, fmt.Errorf("invalid argument %q for \"-o, --output\" flag: accepted arguments are text and json", v)
		}
		opts.output = v
	}
	opts.configFile = values["config-file"]
	opts.outputDir = values["output-dir"]
	opts.templateDir = values["template-dir"]
	opts.tag = values["tag"]
	opts.branch = values["branch"]
	return opts, nil
}

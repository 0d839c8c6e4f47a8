package main

import (
	"fmt"
	"os"
	"strings"
)

// cliVersion is the Databricks CLI version this stand-in behaves like; it is
// what `min_databricks_cli_version` is compared with.
const cliVersion = "1.13.0"

// devVersion is the version of a local CLI build; the CLI skips the minimum
// version check for it, and so do we.
const devVersion = "0.0.0-dev"

// currentVersion returns the CLI version in "vX.Y.Z" form.
// BUNDLE_INIT_CLI_VERSION overrides it so tests can exercise the version gate.
func currentVersion() string {
	v := os.Getenv("BUNDLE_INIT_CLI_VERSION")
	if v == "" {
		v = cliVersion
	}
	if v[0] != 'v' {
		v = "v" + v
	}
	return v
}

// checkMinCLIVersion implements min_databricks_cli_version. Development
// builds skip the check before the version's format is even looked at.
func checkMinCLIVersion(minVersion, current string) error {
	if minVersion == "" || compareSemver("v"+devVersion, current) == 0 {
		return nil
	}
	if _, ok := parseSemver(minVersion); !ok {
		return fmt.Errorf("invalid minimum CLI version %q specified. Please specify the version in the format v0.0.0", minVersion)
	}
	if compareSemver(minVersion, current) > 0 {
		return fmt.Errorf("minimum CLI version %q is greater than current CLI version %q. Please upgrade your current Databricks CLI", minVersion, current)
	}
	return nil
}

// semver is a parsed "vMAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]" version,
// accepting what golang.org/x/mod/semver accepts.
type semver struct {
	nums [3]string
	pre  string
}

func parseSemver(v string) (semver, bool) {
	var sv semver
	if !strings.HasPrefix(v, "v") {
		return sv, false
	}
	rest := v[1:]
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		if !validIdents(rest[i+1:], false) {
			return sv, false
		}
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		sv.pre = rest[i+1:]
		if !validIdents(sv.pre, true) {
			return sv, false
		}
		rest = rest[:i]
	}
	parts := strings.Split(rest, ".")
	// Shorthands (v1, v1.2) are valid only without prerelease or build.
	if len(parts) > 3 || (len(parts) < 3 && len(rest) != len(v)-1) {
		return sv, false
	}
	sv.nums = [3]string{"0", "0", "0"}
	for i, p := range parts {
		if !isNumber(p) {
			return sv, false
		}
		sv.nums[i] = p
	}
	return sv, true
}

func isNumber(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validIdents(s string, prerelease bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		digits := true
		for _, c := range id {
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				digits = false
			default:
				return false
			}
		}
		if prerelease && digits && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

// compareSemver compares two versions like semver.Compare: an invalid
// version is smaller than any valid one, and two invalid ones are equal.
func compareSemver(a, b string) int {
	va, okA := parseSemver(a)
	vb, okB := parseSemver(b)
	switch {
	case !okA && !okB:
		return 0
	case !okA:
		return -1
	case !okB:
		return 1
	}
	for i := range va.nums {
		if c := compareNumbers(va.nums[i], vb.nums[i]); c != 0 {
			return c
		}
	}
	return comparePrerelease(va.pre, vb.pre)
}

func compareNumbers(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// comparePrerelease orders prereleases as semver 2.0 does: a release sorts
// after its prereleases, numeric identifiers sort numerically and before
// alphanumeric ones, and a shorter list of equal identifiers sorts first.
func comparePrerelease(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		if x == y {
			continue
		}
		xNum, yNum := isNumber(x), isNumber(y)
		switch {
		case xNum && yNum:
			return compareNumbers(x, y)
		case xNum:
			return -1
		case yNum:
			return 1
		case x < y:
			return -1
		default:
			return 1
		}
	}
	if len(as) < len(bs) {
		return -1
	}
	return 1
}

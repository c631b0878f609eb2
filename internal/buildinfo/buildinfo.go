// Package buildinfo says which build the running binary is: its version,
// the commit it was built from and the Go version, for `mvrefresher
// version` and the mvrefresher_build_info metric.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is stamped by the release build (the Makefile, the Dockerfile):
// -ldflags "-X github.com/mvrefresher/mvrefresher/internal/buildinfo.version=v1.2.3".
var version = ""

// Info identifies a build.
type Info struct {
	// Version is the stamped version, else the module's (go install
	// ...@v1.2.3), else "dev".
	Version string
	// Commit is the VCS revision, with "-dirty" when built from modified
	// files; "unknown" when the build recorded none (built outside a
	// checkout, or with -buildvcs=false).
	Commit    string
	GoVersion string
}

// Read returns the running binary's build.
func Read() Info {
	info := Info{Version: version, Commit: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		revision, modified := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if revision != "" {
			info.Commit = revision
			if modified {
				info.Commit += "-dirty"
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

// String is the form `mvrefresher version` prints:
// "v1.2.3 (commit 0123abc..., go1.26.8)".
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}

// Command mkdeb builds edgesink's .deb packages from deploy/nfpm.yaml with
// nfpm (as a library: the nfpm command pulls in RPM code this project has
// no use for). File times come from SOURCE_DATE_EPOCH, so the same commit
// gives the same package bytes. Run by 'make deb'.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	arch := flag.String("arch", "", "Debian architecture: armhf, arm64 or amd64")
	binary := flag.String("binary", "", "the edgesink binary built for arch")
	version := flag.String("version", "", "package version (starts with a digit)")
	config := flag.String("config", "deploy/nfpm.yaml", "nfpm package definition")
	out := flag.String("out", "dist", "directory for the .deb")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: mkdeb -arch ARCH -binary FILE -version VERSION [-out DIR]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *arch == "" || *binary == "" || *version == "" {
		flag.Usage()
		os.Exit(2)
	}
	path, err := build(*config, *arch, *binary, *version, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

func build(config, arch, binary, version, out string) (string, error) {
	if _, err := os.Stat(binary); err != nil {
		return "", err
	}
	vars := map[string]string{"ARCH": arch, "VERSION": version, "BINARY": binary}
	text, err := os.ReadFile(config)
	if err != nil {
		return "", err
	}
	// Expanded here: nfpm's own mapping skips the contents' src paths.
	expanded := os.Expand(string(text), func(k string) string { return vars[k] })
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(expanded), func(k string) string { return vars[k] })
	if err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("%s: %w", config, err)
	}
	pkger, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(out, pkger.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkger.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("package %s: %w", arch, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, nil
}

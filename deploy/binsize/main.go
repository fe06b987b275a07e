// Command binsize reports what each module takes in a Go binary built with
// symbols (not -s -w): code and data of its packages, by symbol size.
// Shared runtime and type data that belong to no one package are "other".
// Run by 'make size'; the README's size table comes from it.
package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: binsize BINARY   (built without -ldflags '-s -w')")
		os.Exit(2)
	}
	if err := report(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "binsize:", err)
		os.Exit(1)
	}
}

func report(path string) error {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return err
	}
	modules := []string{info.Main.Path}
	for _, d := range info.Deps {
		modules = append(modules, d.Path)
	}
	// Longest module path first, so a nested module wins over its parent.
	sort.Slice(modules, func(i, j int) bool { return len(modules[i]) > len(modules[j]) })

	out, err := exec.Command("go", "tool", "nm", "-size", path).Output()
	if err != nil {
		return fmt.Errorf("go tool nm: %w (was the binary stripped?)", err)
	}
	sizes := map[string]int64{}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[2] == "U" || f[2] == "B" || f[2] == "b" {
			continue // undefined, or zeroed memory that takes no room in the file
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size > fi.Size() {
			continue // e.g. FIPS's 32 MiB DRBG arena: reserved at run time, not stored
		}
		total += size
		sizes[owner(strings.Join(f[3:], " "), modules)] += size
	}
	type row struct {
		name string
		size int64
	}
	var rows []row
	for k, v := range sizes {
		rows = append(rows, row{k, v})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].size > rows[j].size })
	fmt.Printf("%s: %d bytes with symbols; symbol sizes by module:\n", path, fi.Size())
	for _, r := range rows {
		fmt.Printf("  %9d  %5.1f%%  %s\n", r.size, 100*float64(r.size)/float64(total), r.name)
	}
	return nil
}

// owner names the module a symbol belongs to: "std" for the standard
// library, "other" for linker-made data.
func owner(sym string, modules []string) string {
	sym = strings.TrimPrefix(sym, "type:")
	sym = strings.TrimLeft(sym, "*")
	for _, m := range modules {
		if strings.HasPrefix(sym, m+".") || strings.HasPrefix(sym, m+"/") {
			return m
		}
		// The linker escapes dots in the last path element: paho%2emqtt.
		if esc := strings.ReplaceAll(m, ".", "%2e"); esc != m {
			if i := strings.LastIndex(m, "/"); i >= 0 {
				esc = m[:i+1] + strings.ReplaceAll(m[i+1:], ".", "%2e")
			}
			if strings.HasPrefix(sym, esc+".") || strings.HasPrefix(sym, esc+"/") {
				return m
			}
		}
	}
	first := sym
	if i := strings.IndexAny(first, "./"); i >= 0 {
		first = first[:i]
	}
	if first == "" || strings.HasPrefix(sym, "go:") {
		return "other"
	}
	if !strings.Contains(first, ".") {
		return "std"
	}
	return "other"
}

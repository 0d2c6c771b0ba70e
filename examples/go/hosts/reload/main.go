// A host that opens plugins the way a long-running program would, one
// request after another, so that Go's plugin cache can be watched:
//
//	reload open PATH | copy FROM TO ...
//
// `open PATH` opens a plugin, looks up Greet and calls it; `copy FROM TO`
// installs FROM over TO (a new file, renamed into place, as a rebuild
// installs its output) while the host keeps running.
package main

import (
	"fmt"
	"os"
	"plugin"
)

func main() {
	args := os.Args[1:]
	for len(args) >= 2 {
		switch args[0] {
		case "open":
			open(args[1])
			args = args[2:]
		case "copy":
			install(args[1], args[2])
			args = args[3:]
		default:
			fmt.Println("usage: reload open PATH | copy FROM TO ...")
			os.Exit(2)
		}
	}
}

func open(path string) {
	p, err := plugin.Open(path)
	if err != nil {
		fmt.Printf("open %s: %v\n", path, err)
		return
	}
	sym, err := p.Lookup("Greet")
	if err != nil {
		fmt.Printf("open %s: lookup: %v\n", path, err)
		return
	}
	fmt.Printf("open %s: Greet() = %q\n", path, sym.(func() string)())
}

func install(from, to string) {
	data, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to+".new", data, 0o755)
	}
	if err == nil {
		err = os.Rename(to+".new", to)
	}
	if err != nil {
		fmt.Println("copy:", err)
		os.Exit(1)
	}
	fmt.Printf("copy %s over %s\n", from, to)
}

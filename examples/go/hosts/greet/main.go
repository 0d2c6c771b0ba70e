// A host for greet-like plugins:
//
//	greet [-chdir DIR] [-as string|int] [-commaok] PLUGIN SYMBOL
//
// opens PLUGIN, looks SYMBOL up, asserts it to a function type, calls it.
package main

import (
	"flag"
	"fmt"
	"os"
	"plugin"
)

func main() {
	chdir := flag.String("chdir", "", "change to this directory before opening the plugin")
	as := flag.String("as", "string", "assert the symbol to func() string or func() int")
	commaOK := flag.Bool("commaok", false, "use the two-value (comma-ok) assertion")
	flag.Parse()
	path, name := flag.Arg(0), flag.Arg(1)

	if *chdir != "" {
		if err := os.Chdir(*chdir); err != nil {
			fail("chdir", err)
		}
	}
	p, err := plugin.Open(path)
	if err != nil {
		fail("open", err)
	}
	sym, err := p.Lookup(name)
	if err != nil {
		fail("lookup", err)
	}
	switch {
	case *as == "int" && *commaOK:
		f, ok := sym.(func() int)
		if !ok {
			fmt.Printf("%s is a %T, not a func() int\n", name, sym)
			os.Exit(1)
		}
		fmt.Println(f())
	case *as == "int":
		fmt.Println(sym.(func() int)()) // panics if the type is wrong
	default:
		fmt.Println(sym.(func() string)())
	}
}

func fail(step string, err error) {
	fmt.Printf("%s: %v\n", step, err)
	os.Exit(1)
}

// A host built against counter-v1 (v1.0.0) that loads a plugin sharing the
// counter package, and bumps the shared counter before and after.
package main

import (
	"fmt"
	"os"
	"plugin"

	"minildr.example/counter"
)

func main() {
	fmt.Println("host:   counter.Bump() =", counter.Bump())
	p, err := plugin.Open(os.Args[1])
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	sym, err := p.Lookup("BumpTwice")
	if err != nil {
		fmt.Println("lookup:", err)
		os.Exit(1)
	}
	fmt.Println("plugin:", sym.(func() string)())
	fmt.Println("host:   counter.Bump() =", counter.Bump())
}

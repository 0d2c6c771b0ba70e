// A host that imports minildr.example/shapes (built against shapes-v1)
// and loads a plugin that imports it too (built against shapes-v2).
package main

import (
	"fmt"
	"os"
	"plugin"

	"minildr.example/shapes"
)

func main() {
	fmt.Println("host: a 3x3 square has area", shapes.Square{Side: 3}.Area())
	p, err := plugin.Open(os.Args[1])
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	sym, err := p.Lookup("Describe")
	if err != nil {
		fmt.Println("lookup:", err)
		os.Exit(1)
	}
	fmt.Println("plugin:", sym.(func() string)())
}

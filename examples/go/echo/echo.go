// The interface-contract plugin, in the shape the article recommends:
// the exported variable holds a POINTER to the struct (see hosts/command).
package main

import "fmt"

type Echo struct {
	Text string
}

func (e *Echo) Name() string { return "echo" }

func (e *Echo) Run() error {
	fmt.Println(e.Text)
	return nil
}

// Command is what the host looks up. Lookup returns the ADDRESS of this
// variable: a **Echo, which has no methods at all.
var Command = &Echo{Text: "echo says hi"}

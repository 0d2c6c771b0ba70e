// The same plugin, made to work: the exported variable holds the struct
// itself, so Lookup's pointer to it is a *Echo, and *Echo has Name and Run.
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

var Command = Echo{Text: "echo says hi"}

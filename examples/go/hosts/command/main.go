// The host of the interface-contract pattern: it defines the interface,
// looks up the plugin's "Command" and asserts it to that interface.
package main

import (
	"fmt"
	"os"
	"plugin"
)

// Commander is the contract, defined by the host alone. Go interfaces are
// satisfied by method sets, so the plugin need not import it.
type Commander interface {
	Name() string
	Run() error
}

func main() {
	p, err := plugin.Open(os.Args[1])
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	sym, err := p.Lookup("Command")
	if err != nil {
		fmt.Println("lookup:", err)
		os.Exit(1)
	}
	cmd, ok := sym.(Commander)
	if !ok {
		fmt.Printf("Command is a %T, which does not implement Commander\n", sym)
		os.Exit(1)
	}
	fmt.Println("loaded command:", cmd.Name())
	if err := cmd.Run(); err != nil {
		fmt.Println("run:", err)
		os.Exit(1)
	}
}

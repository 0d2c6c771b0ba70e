// A Go plugin: built with -buildmode=plugin, loaded by hosts/greet.
package main

// Greet is exported: its name starts with a capital letter.
func Greet() string {
	return "hello from a Go plugin"
}

// shout is unexported: Lookup cannot see it, even though it is compiled in.
func shout() string {
	return "HELLO FROM A GO PLUGIN"
}

// Keep shout in the binary, so that "not found" below is about visibility,
// not about the linker dropping dead code.
var _ = shout

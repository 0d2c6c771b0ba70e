// The Go examples of notebook 09 (the appendix). One module, no dependencies
// outside it, so building never needs the network. The `go` line is the
// oldest toolchain the notebook uses (the plugin built with an older Go).
module minildr.example/goplugins

go 1.26

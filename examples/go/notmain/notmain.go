// The same function in an ordinary library package: `go build
// -buildmode=plugin` refuses it, because a plugin is a program's main package.
package greetings

func Greet() string {
	return "hello from a library package"
}

// Package counter: Bump adds step() to a counter shared by whoever imports
// the package. counter-v2 is this file with one number changed.
package counter

var count int

// step is how much Bump adds: 1 here, 10 in counter-v2.
//
//go:noinline
func step() int { return 10 }

// Bump adds step() to the shared counter and returns it.
//
//go:noinline
func Bump() int {
	count += step()
	return count
}

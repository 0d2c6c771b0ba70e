// A plugin that bumps the counter package it shares with its host.
package main

import (
	"fmt"

	"minildr.example/counter"
)

// BumpTwice calls the shared package's Bump twice.
func BumpTwice() string {
	a := counter.Bump()
	b := counter.Bump()
	return fmt.Sprintf("counter.Bump() = %d, then %d", a, b)
}

package main

import (
	"fmt"

	"minildr.example/shapes"
)

func Describe() string {
	s := shapes.Square{Side: 3}
	return fmt.Sprintf("area %v, perimeter %v", s.Area(), s.Perimeter())
}

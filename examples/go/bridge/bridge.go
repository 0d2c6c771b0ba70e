// Go code callable from C (and so from Python): built with
// -buildmode=c-shared, each //export function becomes a C symbol.
// minildr.course.golang.build_c_shared stamps a minildr manifest into the result.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"runtime"
	"strings"
	"sync"
)

//export go_add
func go_add(a, b C.int) C.int {
	return a + b
}

//export go_count_words
func go_count_words(text *C.char) C.int {
	return C.int(len(strings.Fields(C.GoString(text))))
}

var (
	versionOnce sync.Once
	versionText *C.char // made once, never freed: the library cannot be unloaded anyway
)

//export go_runtime_version
func go_runtime_version() *C.char {
	versionOnce.Do(func() { versionText = C.CString(runtime.Version()) })
	return versionText
}

// A c-shared library still needs a main package with a main function;
// it never runs.
func main() {}

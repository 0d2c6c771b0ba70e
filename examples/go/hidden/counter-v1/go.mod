// A shared package in two copies (counter-v1, counter-v2): same module path,
// same API; only the body of an unexported, never-inlined function differs.
module minildr.example/counter

go 1.26

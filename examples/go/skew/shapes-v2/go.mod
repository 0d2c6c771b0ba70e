// A shared package at two versions (shapes-v1, shapes-v2): same module path,
// different content. The host uses one, the plugin the other.
module minildr.example/shapes

go 1.26

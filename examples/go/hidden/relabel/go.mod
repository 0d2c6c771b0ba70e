// The plugin, built against the host's very counter-v1, but under the
// version label v1.0.1: the same code, only the label differs.
module minildr.example/relabelplugin

go 1.26

require minildr.example/counter v1.0.1

replace minildr.example/counter => ../counter-v1

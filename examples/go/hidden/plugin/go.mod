// The plugin, built against counter-v2 under the SAME version label as the
// host's counter-v1 (v1.0.0): a changed body, nothing else.
module minildr.example/hiddenplugin

go 1.26

require minildr.example/counter v1.0.0

replace minildr.example/counter => ../counter-v2

module minildr.example/skewplugin

go 1.26

require minildr.example/shapes v1.0.0

replace minildr.example/shapes => ../shapes-v2

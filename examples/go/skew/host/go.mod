module minildr.example/skewhost

go 1.26

require minildr.example/shapes v1.0.0

replace minildr.example/shapes => ../shapes-v1

module minildr.example/hiddenhost

go 1.26

require minildr.example/counter v1.0.0

replace minildr.example/counter => ../counter-v1

module switchyard.dev/node-test/pause

go 1.22

module switchyard.dev/node-test/redis-server

go 1.22

module github.com/warren-amqp/warren/bench/compare

go 1.26.8

require (
	github.com/rabbitmq/amqp091-go v1.16.0
	github.com/warren-amqp/warren v0.0.0
)

require golang.org/x/net v0.62.0 // indirect

replace github.com/warren-amqp/warren => ../..

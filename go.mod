module github.com/warren-amqp/warren

go 1.26.8

require (
	github.com/google/gofuzz v1.2.0 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/net v0.62.0 // indirect
)

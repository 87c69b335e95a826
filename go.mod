module github.com/warren-amqp/warren

go 1.26.0

require (
	github.com/google/gofuzz v1.2.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
	golang.org/x/net v0.62.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect

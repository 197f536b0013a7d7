module github.com/nolaproject/nola

go 1.26

require (
	github.com/anishathalye/porcupine v1.3.1 // indirect
	github.com/google/btree v1.1.3 // indirect
	pgregory.net/rapid v1.3.0 // indirect
)

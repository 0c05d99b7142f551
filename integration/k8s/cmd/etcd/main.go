// Command etcd is etcd's own server, at the version kubernetes v1.37.2's
// module graph selects.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }

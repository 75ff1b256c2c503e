// A stdlib-only program: Berth's scanner tests read its embedded build info.
package main

import "fmt"

func main() { fmt.Println("hello from the berth scan fixture") }

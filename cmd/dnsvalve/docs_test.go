package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestEveryConfigKeyDocumented: every key of Config appears in the README
// (its table writes list items as lists[].key and policies as
// policies.NAME.key).
func TestEveryConfigKeyDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(tp reflect.Type, prefix string)
	walk = func(tp reflect.Type, prefix string) {
		for i := 0; i < tp.NumField(); i++ {
			f := tp.Field(i)
			tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Duration(0)):
				walk(ft, key+".")
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), key+"[].")
			case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), key+".NAME.")
			default:
				keys = append(keys, key)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	for _, k := range keys {
		if !documented(string(readme), k) {
			t.Errorf("config key %s is not in the README's key table", k)
		}
	}
}

// documented accepts `a.b.c` and the table's shorthands: `policies.NAME.allow` /
// `block` / `alert` and `cache.min_ttl` / `cache.max_ttl` style pairs.
func documented(readme, key string) bool {
	if strings.Contains(readme, "`"+key+"`") {
		return true
	}
	i := strings.LastIndex(key, ".")
	if i < 0 {
		return false
	}
	prefix, last := key[:i+1], key[i+1:]
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "| `"+prefix) && strings.Contains(line, "`"+last+"`") {
			return true
		}
		if strings.HasPrefix(line, "| `"+prefix) && strings.Contains(line, "`"+key+"`") {
			return true
		}
	}
	return false
}

package cosmos_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/loom-mesh/loom/adapters/cosmos"
)

const key = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DDJzIZxpIgRaBXd1O2uyCMSaf4y+WfvlsVzxhKkxxt/Q6w=="

func TestOptionsRedactKey(t *testing.T) {
	o := cosmos.Options{Endpoint: "https://acct.documents.azure.com:443/", Key: key}
	for _, s := range []string{o.String(), fmt.Sprint(o), fmt.Sprintf("%v %+v %#v", o, o, o)} {
		if strings.Contains(s, key[:20]) {
			t.Fatalf("the key is printed: %s", s)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	good := cosmos.Options{Endpoint: "https://acct.documents.azure.com:443/", Key: key}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*cosmos.Options)
		want string
	}{
		{"no endpoint", func(o *cosmos.Options) { o.Endpoint = "" }, "no endpoint"},
		{"http endpoint", func(o *cosmos.Options) { o.Endpoint = "http://x/" }, "want https"},
		{"no key", func(o *cosmos.Options) { o.Key = "" }, "no key"},
		{"key not base64", func(o *cosmos.Options) { o.Key = "not base64!" }, "not base64"},
		{"bad database", func(o *cosmos.Options) { o.Database = "a/b" }, "database"},
		{"same containers", func(o *cosmos.Options) { o.LeaseContainer, o.JournalContainer = "x", "x" }, "must differ"},
		{"ca and insecure", func(o *cosmos.Options) { o.CAFile, o.InsecureSkipVerify = "ca.pem", true }, "choose one"},
		{"weak consistency", func(o *cosmos.Options) { o.Consistency = "Session" }, "consistency"},
	} {
		o := good
		tc.edit(&o)
		err := o.Validate()
		if !errors.Is(err, cosmos.ErrOptions) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v; want ErrOptions saying %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), key[:20]) {
			t.Errorf("%s: the error prints the key", tc.name)
		}
	}
}

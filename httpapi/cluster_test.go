package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"testing"

	"github.com/nolaproject/nola/httpapi"
)

// Every name in GET /v1/cluster is snake_case: the answering server's
// counters once appeared under their Go names ("Invocations",
// "KeepAlive"), beside snake_case everywhere else.
func TestClusterJSONIsSnakeCase(t *testing.T) {
	nodes := startCluster(t, 1, httpapi.Options{})
	c := httpapi.NewClient(nodes[0].url, "")
	defer c.Close()
	if _, err := c.Invoke(ctx(t), "m", "a", "counter", "inc", nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(nodes[0].url + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/cluster: HTTP %d, %v", resp.StatusCode, err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	var names int
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				names++
				if !snake.MatchString(k) {
					t.Errorf("%s.%s is not snake_case", path, k)
				}
				walk(path+"."+k, e)
			}
		case []any:
			for _, e := range v {
				walk(path+"[]", e)
			}
		}
	}
	walk("", doc)
	if names < 20 {
		t.Fatalf("only %d names in %s", names, b)
	}
	// And the typed client reads the counters back.
	st, err := c.Cluster(ctx(t))
	if err != nil || st.Self.Stats.Invocations != 1 || st.Self.Stats.Activations != 1 {
		t.Fatalf("Cluster() = %+v, %v; want 1 invocation and 1 activation", st.Self.Stats, err)
	}
}

// Command curl is the agnhost image's curl (upstream's image has the real
// one): the options the upstream e2e specs pass, with curl's meanings, over
// Go's HTTP client, so that HTTPS reaches servers whose TLS busybox wget
// cannot speak (the kubelet API's). Any other option is refused, as curl
// refuses an unknown one (exit 2).
package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

type options struct {
	method         string
	head           bool
	silent         bool
	showError      bool
	insecure       bool
	fail           bool
	location       bool
	output         string
	writeOut       string
	headers        []string
	data           *string
	user           string
	agent          string
	maxTime        time.Duration
	connectTimeout time.Duration
	url            string
}

// Options taking a value, by their short and long names.
var valued = map[string]string{
	"-X": "request", "--request": "request",
	"-o": "output", "--output": "output",
	"-w": "write-out", "--write-out": "write-out",
	"-H": "header", "--header": "header",
	"-d": "data", "--data": "data", "--data-raw": "data", "--data-binary": "data",
	"-u": "user", "--user": "user",
	"-A": "user-agent", "--user-agent": "user-agent",
	"-m": "max-time", "--max-time": "max-time",
	"--connect-timeout": "connect-timeout",
}

// Options without a value.
var flags = map[string]string{
	"-I": "head", "--head": "head",
	"-s": "silent", "--silent": "silent",
	"-S": "show-error", "--show-error": "show-error",
	"-k": "insecure", "--insecure": "insecure",
	"-f": "fail", "--fail": "fail",
	"-L": "location", "--location": "location",
}

func main() {
	opts, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "curl: %v\n", err)
		os.Exit(2)
	}
	os.Exit(run(opts))
}

func parse(args []string) (*options, error) {
	o := &options{output: "-"}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			if o.url != "" {
				return nil, fmt.Errorf("only one URL is supported (%q and %q)", o.url, arg)
			}
			o.url = arg
			continue
		}
		// Long options whole; short ones may be grouped (-sIk) and carry
		// their value attached (-XGET) or as the next argument.
		names := []string{arg}
		if !strings.HasPrefix(arg, "--") {
			names = nil
			for j := 1; j < len(arg); j++ {
				name := "-" + arg[j:j+1]
				if _, ok := valued[name]; ok && j+1 < len(arg) {
					if err := o.set(valued[name], arg[j+1:]); err != nil {
						return nil, err
					}
					break
				}
				names = append(names, name)
			}
		}
		for _, name := range names {
			if key, ok := flags[name]; ok {
				o.setFlag(key)
				continue
			}
			key, ok := valued[name]
			if !ok {
				return nil, fmt.Errorf("option %s: is unknown", name)
			}
			if i+1 >= len(args) {
				return nil, fmt.Errorf("option %s: requires parameter", name)
			}
			i++
			if err := o.set(key, args[i]); err != nil {
				return nil, err
			}
		}
	}
	if o.url == "" {
		return nil, errors.New("no URL specified")
	}
	if !strings.Contains(o.url, "://") {
		o.url = "http://" + o.url
	}
	return o, nil
}

func (o *options) setFlag(key string) {
	switch key {
	case "head":
		o.head = true
	case "silent":
		o.silent = true
	case "show-error":
		o.showError = true
	case "insecure":
		o.insecure = true
	case "fail":
		o.fail = true
	case "location":
		o.location = true
	}
}

func (o *options) set(key, value string) error {
	seconds := func() (time.Duration, error) {
		s, err := strconv.ParseFloat(value, 64)
		if err != nil || s < 0 {
			return 0, fmt.Errorf("option --%s: expected a proper numerical parameter", key)
		}
		return time.Duration(s * float64(time.Second)), nil
	}
	var err error
	switch key {
	case "request":
		o.method = value
	case "output":
		o.output = value
	case "write-out":
		o.writeOut = value
	case "header":
		o.headers = append(o.headers, value)
	case "data":
		if o.data != nil {
			value = *o.data + "&" + value
		}
		o.data = &value
	case "user":
		o.user = value
	case "user-agent":
		o.agent = value
	case "max-time":
		o.maxTime, err = seconds()
	case "connect-timeout":
		o.connectTimeout, err = seconds()
	}
	return err
}

// run makes the request and returns curl's exit code.
func run(o *options) int {
	method := "GET"
	if o.head {
		method = "HEAD"
	}
	var body io.Reader
	if o.data != nil {
		method = "POST"
		body = strings.NewReader(*o.data)
	}
	if o.method != "" {
		method = o.method
	}
	req, err := http.NewRequest(method, o.url, body)
	if err != nil {
		return o.failed(3, "URL rejected: %v", err)
	}
	req.Header.Set("User-Agent", "curl/8 (berth e2e stand-in)")
	req.Header.Set("Accept", "*/*")
	if o.data != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if o.agent != "" {
		req.Header.Set("User-Agent", o.agent)
	}
	if o.user != "" {
		name, password, _ := strings.Cut(o.user, ":")
		req.SetBasicAuth(name, password)
	}
	for _, h := range o.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			continue
		}
		req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	dialer := &net.Dialer{Timeout: o.connectTimeout}
	client := &http.Client{
		Timeout: o.maxTime,
		Transport: &http.Transport{
			DialContext:     dialer.DialContext,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: o.insecure},
		},
	}
	if !o.location {
		client.CheckRedirect = func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		o.writeStatus(0)
		return o.failed(exitCode(err), "%v", err)
	}
	defer resp.Body.Close()

	if o.fail && resp.StatusCode >= 400 {
		o.writeStatus(resp.StatusCode)
		return o.failed(22, "The requested URL returned error: %d", resp.StatusCode)
	}
	out := io.Writer(os.Stdout)
	if o.output != "-" {
		f, err := os.Create(o.output)
		if err != nil {
			return o.failed(23, "Failure writing output to destination: %v", err)
		}
		defer f.Close()
		out = f
	}
	if o.head {
		// -I shows the response's header, not its body.
		fmt.Fprintf(out, "%s %s\r\n", resp.Proto, resp.Status)
		if err := resp.Header.Write(out); err != nil {
			return o.failed(23, "Failure writing output to destination: %v", err)
		}
		fmt.Fprint(out, "\r\n")
	} else if _, err := io.Copy(out, resp.Body); err != nil {
		return o.failed(56, "Failure when receiving data from the peer: %v", err)
	}
	o.writeStatus(resp.StatusCode)
	return 0
}

// writeStatus prints -w's format, with %{http_code} as curl does ("000"
// when there was no response) and \n as a newline.
func (o *options) writeStatus(code int) {
	if o.writeOut == "" {
		return
	}
	text := strings.ReplaceAll(o.writeOut, "%{http_code}", fmt.Sprintf("%03d", code))
	text = strings.ReplaceAll(text, `\n`, "\n")
	fmt.Fprint(os.Stdout, text)
}

// failed reports an error as curl does (not with -s, unless -S) and
// returns its exit code.
func (o *options) failed(code int, format string, args ...any) int {
	if !o.silent || o.showError {
		fmt.Fprintf(os.Stderr, "curl: (%d) %s\n", code, fmt.Sprintf(format, args...))
	}
	return code
}

// exitCode is curl's code for a failed request: 28 timed out, 6 host not
// resolved, 35 TLS handshake, 7 could not connect.
func exitCode(err error) int {
	var dnsErr *net.DNSError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		return 28
	case errors.As(err, &dnsErr):
		return 6
	case errors.As(err, &certErr):
		return 60
	case strings.Contains(err.Error(), "tls:"):
		return 35
	default:
		return 7
	}
}

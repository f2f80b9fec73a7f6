package public

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"golang.org/x/text/language"
)

// The page's strings live in locales/<tag>.json, one catalogue per
// language, so a translator edits a file and not the code.
//
//go:embed locales/*.json
var localeFiles embed.FS

// catalog is one language's strings; its values are fmt formats with
// indexed verbs (%[1]s), since word order differs between languages.
type catalog struct {
	tag     language.Tag
	strings map[string]string
}

// T formats the string key with args; an unknown key shows itself, so a
// missing translation is visible rather than blank.
func (c *catalog) T(key string, args ...any) string {
	f, ok := c.strings[key]
	if !ok {
		return key
	}
	return fmt.Sprintf(f, args...)
}

var (
	catalogs []*catalog
	matcher  language.Matcher
)

func init() {
	ents, err := localeFiles.ReadDir("locales")
	if err != nil {
		panic(err)
	}
	var tags []language.Tag
	// English first: the matcher's fallback.
	for _, pass := range []bool{true, false} {
		for _, e := range ents {
			name := strings.TrimSuffix(e.Name(), ".json")
			if (name == "en") != pass {
				continue
			}
			raw, err := localeFiles.ReadFile(path.Join("locales", e.Name()))
			if err != nil {
				panic(err)
			}
			c := &catalog{tag: language.MustParse(name)}
			if err := json.Unmarshal(raw, &c.strings); err != nil {
				panic(fmt.Sprintf("public: locales/%s: %v", e.Name(), err))
			}
			catalogs = append(catalogs, c)
			tags = append(tags, c.tag)
		}
	}
	matcher = language.NewMatcher(tags)
}

// pick chooses the catalogue for an Accept-Language header; anything
// unparsable or unsupported gets English.
func pick(acceptLanguage string) *catalog {
	prefs, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil {
		return catalogs[0]
	}
	_, i, _ := matcher.Match(prefs...)
	return catalogs[i]
}

package smtpd

import (
	"github.com/emersion/go-sasl"
)

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): not an RFC, but what Outlook, older
// PHPMailer and many appliances still speak. go-sasl only ships the client.
type loginServer struct {
	// locked refuses a username before its password is asked for.
	locked   func(username string) error
	auth     func(username, password string) error
	username []byte
	step     int
}

func newLoginServer(locked func(username string) error, auth func(username, password string) error) sasl.Server {
	return &loginServer{locked: locked, auth: auth}
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		s.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		// An initial response is the username (AUTH LOGIN dXNlcg==).
		return s.gotUsername(response)
	case 1:
		return s.gotUsername(response)
	case 2:
		s.step = 3
		return nil, true, s.auth(string(s.username), string(response))
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

func (s *loginServer) gotUsername(username []byte) ([]byte, bool, error) {
	s.username = username
	s.step = 2
	if err := s.locked(string(username)); err != nil {
		return nil, false, err
	}
	return []byte("Password:"), false, nil
}

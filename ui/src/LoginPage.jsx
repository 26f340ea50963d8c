// Login: username and password; a one-time code field appears when the account has
// TOTP enabled (the server answers 401 with a problem type ending in "mfa-required").
import { useState } from 'react';
import { Button, CardContent, CircularProgress } from '@mui/material';
import { Form, Login, PasswordInput, TextInput, required, useLogin, useNotify } from 'react-admin';

const isMfa = error => String(error?.body?.type || '').endsWith('mfa-required');

function LoginForm() {
    const login = useLogin();
    const notify = useNotify();
    const [loading, setLoading] = useState(false);
    const [needOtp, setNeedOtp] = useState(false);
    const submit = values => {
        setLoading(true);
        login(values)
            .catch(error => {
                if (isMfa(error)) setNeedOtp(true);
                notify(error?.message || 'Sign in failed', { type: 'error' });
            })
            .finally(() => setLoading(false));
    };
    return (
        <Form onSubmit={submit} noValidate>
            <CardContent sx={{ width: 300 }}>
                <TextInput autoFocus source="username" label="Username" autoComplete="username"
                    validate={required()} />
                <PasswordInput source="password" label="Password" autoComplete="current-password"
                    validate={required()} />
                {needOtp ? (
                    <TextInput source="otp" label="One-time code" autoComplete="one-time-code"
                        validate={required()} />
                ) : null}
                <Button variant="contained" type="submit" color="primary" disabled={loading}
                    fullWidth sx={{ mt: 2 }}>
                    {loading ? <CircularProgress size={19} thickness={3} /> : 'Sign in'}
                </Button>
            </CardContent>
        </Form>
    );
}

export const LoginPage = () => (
    <Login>
        <LoginForm />
    </Login>
);

// Login: username and password; a one-time code field appears when the account has
// TOTP enabled (the server answers 401 with a problem type ending in "mfa-required").
// The methods come from GET /auth/methods: one button per OpenID provider (the browser
// goes there and comes back signed in), and a choice of where the password is checked
// when the directory (ldap) is on.
import { useEffect, useState } from 'react';
import { Button, CardContent, CircularProgress, Divider } from '@mui/material';
import {
    Form, Login, PasswordInput, RadioButtonGroupInput, TextInput, required, useLogin, useNotify,
} from 'react-admin';
import { loginMethods, startSso } from './authProvider.js';

const isMfa = error => String(error?.body?.type || '').endsWith('mfa-required');
const METHOD_CHOICES = [
    { id: 'password', name: 'Password' },
    { id: 'ldap', name: 'Directory (LDAP)' },
];

function PasswordForm({ withLdap }) {
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
        <Form onSubmit={submit} noValidate defaultValues={{ method: 'password' }}>
            <CardContent sx={{ width: 300, pb: 0 }}>
                {withLdap ? (
                    <RadioButtonGroupInput source="method" label="Sign in with"
                        choices={METHOD_CHOICES} row />
                ) : null}
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

function ProviderButtons({ providers }) {
    const [going, setGoing] = useState(null);
    if (!providers.length) return null;
    return (
        <CardContent sx={{ width: 300, display: 'flex', flexDirection: 'column', gap: 1 }}>
            {providers.map(p => (
                <Button key={p.name} variant="outlined" fullWidth disabled={going !== null}
                    onClick={() => { setGoing(p.name); startSso(p); }}>
                    {going === p.name ? <CircularProgress size={19} thickness={3} />
                        : `Continue with ${p.label || p.name}`}
                </Button>
            ))}
        </CardContent>
    );
}

function LoginChoices() {
    const [offered, setOffered] = useState(null);
    useEffect(() => {
        let live = true;
        loginMethods().then(m => { if (live) setOffered(m); });
        return () => { live = false; };
    }, []);
    const methods = offered?.methods || ['password'];
    const providers = offered?.providers || [];
    const withLdap = methods.includes('ldap');
    // no answer yet, or passwords on: the form (the server decides anyway)
    const withForm = !offered || methods.includes('password') || withLdap;
    return (
        <>
            {withForm ? <PasswordForm withLdap={withLdap} /> : null}
            {withForm && providers.length ? <Divider sx={{ mt: 2 }}>or</Divider> : null}
            <ProviderButtons providers={providers} />
        </>
    );
}

export const LoginPage = () => (
    <Login>
        <LoginChoices />
    </Login>
);

// Builds the admin UI into the Python package (apicrud/admin_ui/dist), served at /admin/.
// base "./": asset URLs are relative, so the bundle works under any mount path.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const here = fileURLToPath(new URL('.', import.meta.url));
const outDir = join(here, '..', 'apicrud', 'admin_ui', 'dist');
const SOURCES = ['index.html', 'package.json', 'package-lock.json', 'vite.config.js', 'src'];

function files(path) {
    return statSync(path).isDirectory()
        ? readdirSync(path).flatMap(name => files(join(path, name)))
        : [path];
}

// The hash of the sources a bundle was built from, written beside it: a test compares
// it with the sources, so a change under ui/ without `make ui` does not go unnoticed.
export function sourceHash() {
    const hash = createHash('sha256');
    const paths = SOURCES.flatMap(name => files(join(here, name)))
        .map(path => relative(here, path).split(sep).join('/'))
        .sort();
    for (const path of paths) {
        hash.update(`${path}\0`);
        hash.update(readFileSync(join(here, path)));
        hash.update('\0');
    }
    return hash.digest('hex');
}

const stampSources = () => ({
    name: 'apicrud-source-hash',
    closeBundle() {
        writeFileSync(join(outDir, 'source-hash.txt'), `${sourceHash()}\n`);
    },
});

export default defineConfig({
    base: './',
    plugins: [react(), stampSources()],
    build: {
        outDir,
        emptyOutDir: true,
        chunkSizeWarningLimit: 4096,
        sourcemap: false,
    },
    server: {
        // `npm run dev`: proxy the API to a local `apicrud serve`
        proxy: { '/api': 'http://127.0.0.1:8080' },
    },
});
